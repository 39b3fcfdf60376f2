"""Steps as values (Command, Upload, Symlink) and the Connection protocol that runs them."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shipyard.host.artifact import Artifact


@dataclass(frozen=True)
class Command:
    """A command as argv; quoted only at the edge that needs a shell."""

    argv: tuple[str, ...]
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    sudo: bool = False
    timeout: float | None = None
    check: bool = True

    def __str__(self) -> str:
        return shlex.join(self.argv)

    def run(self, ctx: InstallContext) -> None:
        execute(ctx.conn, self)


def as_user(run_as: str | None) -> list[str]:
    """The prefix that runs a command as the app user (root only). runuser forks and waits,
    so the command itself is told to die with runuser (setpriv), which dies with its caller
    (host/local.py): a killed deploy leaves no release command running."""
    return ["runuser", "-u", run_as, "--", "setpriv", "--pdeathsig", "KILL", "--"] if run_as else []


@dataclass(frozen=True)
class Upload:
    """File content to write at `dest` atomically (write then rename)."""

    content: bytes
    dest: PurePosixPath
    mode: int = 0o644
    owner: str | None = None  # a user name; its primary group too

    def __str__(self) -> str:
        return f"write {self.dest} ({len(self.content)} bytes, mode {self.mode:o})"

    def run(self, ctx: InstallContext) -> None:
        ctx.conn.put(self)


@dataclass(frozen=True)
class Symlink:
    """Point `link` at `target`, replacing any existing link atomically."""

    target: str
    link: PurePosixPath

    def __str__(self) -> str:
        return f"link {self.link} -> {self.target}"

    def run(self, ctx: InstallContext) -> None:
        ctx.conn.link(self)


Step = Command | Upload | Symlink


@dataclass(frozen=True)
class Result:
    """What a command did: carries the command so a failure can explain itself."""

    host: str
    command: Command
    exit_code: int
    stdout: str
    stderr: str
    duration: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def output_tail(self, lines: int = 25) -> str:
        text = "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)
        tail = text.splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in tail) if tail else "  (no output)"


class Connection(Protocol):
    """Runs steps on one host."""

    host: str

    def run(self, command: Command) -> Result: ...

    def put(self, upload: Upload) -> None: ...

    def link(self, symlink: Symlink) -> None: ...

    def read(self, path: PurePosixPath) -> bytes | None: ...

    def remove(self, path: PurePosixPath) -> None:
        """Remove a file, socket or link if it is there (`rm -f`)."""

    def make_dirs(self, paths: Sequence[PurePosixPath]) -> None:
        """Make directories and their parents, if missing (`mkdir -p`)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class InstallContext:
    """What an install step runs with: each step type has `run(ctx)`."""

    conn: Connection
    wheels: Path  # the wheel store the release is installed from
    bundles_of: Artifact | None = None  # whose dependencies' bytecode bundles to unpack


def execute(conn: Connection, step: Step) -> Result | None:
    """Run one step; raise CommandFailed when a checked command fails."""
    from shipyard.errors import CommandFailed

    if isinstance(step, Command):
        result = conn.run(step)
        if step.check and not result.ok:
            raise CommandFailed(result)
        return result
    if isinstance(step, Upload):
        conn.put(step)
    else:
        conn.link(step)
    return None
