"""File steps of an install that the installer does in its own process (their `run` ignores
the connection).

Each was a command (rm, mkdir, cp, chown): a process forked from the installer for a few
system calls. A code-only release runs them on every host at every deploy, so they are done
here. The artifact's files are hard-linked into the release, not copied: an artifact never
changes once received, and a link costs no new inode.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import DeployError, ShipyardError
from shipyard.host.diskspace import disk_full

if TYPE_CHECKING:
    from shipyard.host.steps import InstallContext


def _failed(what: str, err: OSError) -> ShipyardError:
    if (full := disk_full(err)) is not None:
        return full
    where = f" ({err.filename})" if err.filename else ""
    return DeployError(
        f"cannot {what}: {err.strerror or err}{where}",
        hint="Check the disk and the permissions under the base directory, then deploy "
        "again; the serving release is untouched.",
    )


@dataclass(frozen=True)
class RemoveTree:
    """Remove a directory and all in it, if it is there (`rm -rf`)."""

    path: Path

    def __str__(self) -> str:
        return f"remove {self.path}"

    def run(self, ctx: InstallContext) -> None:
        try:
            shutil.rmtree(self.path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise _failed(str(self), err) from None


@dataclass(frozen=True)
class MakeDirs:
    """Make directories and their parents, if missing (`mkdir -p`)."""

    paths: tuple[Path, ...]

    def __str__(self) -> str:
        return "make directories " + " ".join(map(str, self.paths))

    def run(self, ctx: InstallContext) -> None:
        try:
            for path in self.paths:
                os.makedirs(path, exist_ok=True)
        except OSError as err:
            raise _failed(str(self), err) from None


@dataclass(frozen=True)
class LinkTree:
    """Hard-link files and directory trees into `dest` (copies where a link cannot be made:
    another filesystem)."""

    sources: tuple[Path, ...]
    dest: Path

    def __str__(self) -> str:
        return f"link {' '.join(map(str, self.sources))} into {self.dest}"

    def run(self, ctx: InstallContext) -> None:
        try:
            for source in self.sources:
                target = self.dest / source.name
                if source.is_dir():
                    shutil.copytree(source, target, copy_function=_link_or_copy, symlinks=True)
                else:
                    _link_or_copy(str(source), str(target))
        except _CopyFailed as failed:
            raise _failed(str(self), failed.error) from None
        except OSError as err:
            raise _failed(str(self), err) from None
        except shutil.Error as err:
            raise DeployError(f"cannot {self}: {err}") from None


class _CopyFailed(Exception):
    """An OSError out of a copy inside copytree, which would keep only its text."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        try:
            shutil.copy2(source, target)
        except OSError as err:
            raise _CopyFailed(err) from None


@dataclass(frozen=True)
class Chown:
    """Give paths to a user and its primary group (`chown [-R] user: paths`); what already
    is theirs is left as it is."""

    user: str
    paths: tuple[Path, ...]
    recursive: bool = False

    def __str__(self) -> str:
        flag = "-R " if self.recursive else ""
        return f"chown {flag}{self.user}: " + " ".join(map(str, self.paths))

    def run(self, ctx: InstallContext) -> None:
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise DeployError(
                f"cannot {self}: there is no user {self.user} on this host.",
                hint="Run 'shipyard provision' for this target: it creates the app user.",
            ) from None
        try:
            for path in self.paths:
                _own(path, entry.pw_uid, entry.pw_gid)
                if self.recursive and path.is_dir() and not path.is_symlink():
                    for root, dirs, files in os.walk(path):
                        for name in dirs + files:
                            _own(Path(root, name), entry.pw_uid, entry.pw_gid)
        except OSError as err:
            raise _failed(str(self), err) from None


def _own(path: Path, uid: int, gid: int) -> None:
    info = os.lstat(path)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)


@dataclass(frozen=True)
class SetMode:
    """Set paths' mode (`chmod MODE`), and with `group_of` give them that user's primary
    group (`chgrp`)."""

    mode: int
    paths: tuple[Path, ...]
    group_of: str | None = None

    def __str__(self) -> str:
        chgrp = f"chgrp {self.group_of}'s group and " if self.group_of else ""
        return f"{chgrp}chmod {self.mode:o} " + " ".join(map(str, self.paths))

    def run(self, ctx: InstallContext) -> None:
        try:
            gid = pwd.getpwnam(self.group_of).pw_gid if self.group_of else -1
        except KeyError:
            raise DeployError(
                f"cannot {self}: there is no user {self.group_of} on this host.",
                hint="Run 'shipyard provision' for this target: it creates the app user.",
            ) from None
        try:
            for path in self.paths:
                info = os.lstat(path)
                if gid != -1 and info.st_gid != gid:
                    os.lchown(path, -1, gid)
                if info.st_mode & 0o7777 != self.mode:
                    os.chmod(path, self.mode)
        except OSError as err:
            raise _failed(str(self), err) from None


@dataclass(frozen=True)
class MakeFiles:
    """Make files that are missing, empty, with `mode`; take other users' access from those
    that are there (what a process creates later keeps its mode: nginx's logs)."""

    mode: int
    paths: tuple[Path, ...]

    def __str__(self) -> str:
        return f"make files {self.mode:o} " + " ".join(map(str, self.paths))

    def run(self, ctx: InstallContext) -> None:
        try:
            for path in self.paths:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, self.mode))
                mode = stat.S_IMODE(os.lstat(path).st_mode)
                if mode & 0o007:
                    os.chmod(path, mode & ~0o007)
        except OSError as err:
            raise _failed(str(self), err) from None


FileStep = RemoveTree | MakeDirs | LinkTree | Chown | SetMode | MakeFiles
