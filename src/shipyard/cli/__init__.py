"""The command line: parse arguments, call a Target, render its typed results."""

from shipyard.cli.commands import main

__all__ = ["main"]
