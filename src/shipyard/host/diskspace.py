"""A full disk, told as such: which filesystem, how much is free, what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from shipyard.errors import ShipyardError

FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFull(ShipyardError):
    """A write failed for want of space (or of quota)."""


def disk_full(err: BaseException) -> DiskFull | None:
    """The error to show for `err` when it is a full disk; None otherwise."""
    if not isinstance(err, OSError) or err.errno not in FULL:
        return None
    where = err.filename2 or err.filename  # a copy's destination, else the file
    place = f" writing {where}" if where else ""
    detail = ""
    if where:
        mount = _mount_of(Path(str(where)))
        try:
            free = os.statvfs(mount)
            left = _size(free.f_bavail * free.f_frsize)
            detail = f" (on the filesystem mounted at {mount}, {left} free)"
        except OSError:
            detail = f" (on the filesystem mounted at {mount})"
    what = "the disk quota is used up" if err.errno == errno.EDQUOT else "no space left"
    return DiskFull(
        f"{what}{place}{detail}.",
        hint="Free some space there (old logs, caches; `shipyard releases` lists what a "
        "rollback keeps, and a smaller `keep` prunes more), then run the command again. "
        "The release that was serving keeps serving.",
    )


def _mount_of(path: Path) -> Path:
    """The mount point `path` is on (the nearest existing parent, then up to a device change)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    device = path.stat().st_dev
    while path != path.parent and path.parent.stat().st_dev == device:
        path = path.parent
    return path


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
