"""The local machine as a Connection: subprocesses and atomic file writes."""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePosixPath

from shipyard.host.steps import Command, Result, Symlink, Upload

LOCAL = "local"


class LocalConnection:
    host = LOCAL

    def run(self, command: Command) -> Result:
        env = {**os.environ, **command.env} if command.env else None
        started = time.monotonic()
        try:
            proc = subprocess.run(
                command.argv,
                cwd=command.cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=command.timeout,
                stdin=subprocess.DEVNULL,
                check=False,
                preexec_fn=partial(_die_with, os.getpid()) if sys.platform == "linux" else None,
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except FileNotFoundError as exc:
            code, out, err = 127, "", f"{command.argv[0]}: not found ({exc.strerror})"
        except subprocess.TimeoutExpired as exc:
            code = 124
            out = _text(exc.stdout)
            err = _text(exc.stderr) + f"\ntimed out after {command.timeout} s"
        return Result(LOCAL, command, code, out, err, time.monotonic() - started)

    def put(self, upload: Upload) -> None:
        write_atomic(Path(upload.dest), upload.content, upload.mode, upload.owner)

    def link(self, symlink: Symlink) -> None:
        replace_symlink(symlink.target, Path(symlink.link))

    def read(self, path: PurePosixPath) -> bytes | None:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, path: PurePosixPath) -> None:
        Path(path).unlink(missing_ok=True)

    def make_dirs(self, paths: Sequence[PurePosixPath]) -> None:
        for path in paths:
            Path(path).mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass


PR_SET_PDEATHSIG = 1


def _die_with(caller: int) -> None:
    """In the child, before exec: be killed when the process that runs it dies, even by
    SIGKILL, so a release command or a build step never outlives the deploy that ran it.
    (A daemon that forks, supervisord or nginx started by hand, is not affected: the flag is
    not inherited by its fork.)"""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != caller:  # the caller died before the flag was set
        os._exit(137)


def write_atomic(dest: Path, content: bytes, mode: int = 0o644, owner: str | None = None) -> None:
    """Write a file so readers see either the old or the new content, with `mode` (and
    `owner`) from birth."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            user = pwd.getpwnam(owner)
            os.fchown(fd, user.pw_uid, user.pw_gid)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_symlink(target: str, link: Path) -> None:
    """Switch `link` to `target` atomically: a new link renamed over the old one."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode(errors="replace")
