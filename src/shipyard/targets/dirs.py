"""Where the deploying machine keeps things by default: the local target's base, the cache."""

from __future__ import annotations

import os
from pathlib import Path


def default_base_dir() -> Path:
    """$SHIPYARD_HOME, else the user's XDG data directory."""
    if home := os.environ.get("SHIPYARD_HOME"):
        return Path(home).expanduser().absolute()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser().absolute() / "shipyard"


def default_cache_dir() -> Path:
    """$SHIPYARD_CACHE, else the user's XDG cache directory: builds are shared across targets."""
    if cache := os.environ.get("SHIPYARD_CACHE"):
        return Path(cache).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().absolute() / "shipyard"
