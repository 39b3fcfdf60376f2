"""Exports: the app rendered for an engine that runs it (Kubernetes), written, not deployed."""
