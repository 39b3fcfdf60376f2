"""Where the deploying machine keeps things by default: the local target's base, the cache."""

from __future__ import annotations

import os
from pathlib import Path

# Root's apps are services of the machine (FHS: /srv), and a base there lets nginx's workers
# run as their own user: root's home is closed to them.
ROOT_BASE_DIR = Path("/srv/shipyard")


def default_base_dir() -> Path:
    """$SHIPYARD_HOME; else, as root, /srv/shipyard (or the older per-user base where apps
    already live); else the user's XDG data directory."""
    if home := os.environ.get("SHIPYARD_HOME"):
        return Path(home).expanduser().absolute()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    per_user = Path(data).expanduser().absolute() / "shipyard"
    if os.geteuid() != 0:
        return per_user
    return per_user if _holds_apps(per_user) else ROOT_BASE_DIR


def _holds_apps(base: Path) -> bool:
    """Apps deployed under this base before root's default moved: they stay where they are."""
    try:
        return any(child.name != ".shipyard" for child in base.iterdir())
    except OSError:
        return False


def default_cache_dir() -> Path:
    """$SHIPYARD_CACHE, else the user's XDG cache directory: builds are shared across targets."""
    if cache := os.environ.get("SHIPYARD_CACHE"):
        return Path(cache).expanduser().absolute()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser().absolute() / "shipyard"
