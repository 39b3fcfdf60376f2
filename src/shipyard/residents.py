"""Where resident helper processes (warm start's command servers, cli/warm.py; the build
backends kept imported, build/resident.py) keep their sockets, and when they may run.

Standard library only: the `shipyard` program's launcher imports it before anything else.
"""

from __future__ import annotations

import os
import resource
import stat
import zlib

SWITCH = "SHIPYARD_WARM"  # "0": never use nor start a server
DIR_VARIABLE = "SHIPYARD_WARM_DIR"  # where the sockets live; default: see socket_dir
LINGER_VARIABLE = "SHIPYARD_WARM_LINGER"  # seconds a server waits for the next command
_AT_START_UP = ("PYTHON", "LC_ALL", "LC_CTYPE", "LANG")  # what the interpreter reads once
_LIMITS = (
    resource.RLIMIT_NOFILE,
    resource.RLIMIT_NPROC,
    resource.RLIMIT_CORE,
    resource.RLIMIT_AS,
    resource.RLIMIT_FSIZE,
    resource.RLIMIT_CPU,
)


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0"


def socket_dir() -> str | None:
    """The user's private directory for the sockets, made 0700 if missing; None if it is not
    private (another user could then reach the server, or plant one)."""
    path = os.environ.get(DIR_VARIABLE)
    if not path:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        if runtime and os.path.isdir(runtime):
            path = os.path.join(runtime, "shipyard")
        else:
            path = f"/tmp/shipyard-{os.geteuid()}"
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError:
        return None
    private = stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
    return path if private and stat.S_IMODE(info.st_mode) & 0o077 == 0 else None


def server_key(executable: str, path: list[str], environ: dict[str, str]) -> str:
    """What makes two processes run a command alike: the same executable, import path,
    PYTHON* and locale settings (read once, at start-up), groups, resource limits, and
    network and mount namespaces (a socket's path reaches across them; a command must run
    in its caller's).
    Two checksums: a name, not a secret (the directory is private)."""
    python = sorted((k, v) for k, v in environ.items() if k.startswith(_AT_START_UP))
    spaces = []
    for kind in ("net", "mnt"):
        try:
            spaces.append(os.readlink(f"/proc/self/ns/{kind}"))
        except OSError:
            spaces.append("")
    groups = [os.getegid(), *sorted(os.getgroups())]
    limits = [resource.getrlimit(limit) for limit in _LIMITS]
    text = repr([executable, path, python, spaces, groups, limits]).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"
