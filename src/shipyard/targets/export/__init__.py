"""Exports: the app rendered for an engine that runs it (a container image, Kubernetes),
written, not deployed."""
