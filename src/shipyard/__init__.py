"""shipyard: deploy a Python web app to your own servers with zero downtime and instant rollback."""

__version__ = "0.1.0"
