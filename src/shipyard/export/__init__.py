"""Exports: the files another engine runs a release with, rendered from the release artifact."""
