"""Every error shipyard reports to a user, each with its exit code.

ShipyardError                  exit 1: anything we can explain in one paragraph
 ├── SpecError                 the spec file is missing or invalid
 ├── UsageError                a CLI argument or value is wrong
 ├── BuildError                tests, wheel or wheelhouse could not be made
 │    └── TestsFailed
 ├── HostError                 a prerequisite on the target is missing
 ├── CommandFailed             a command run on a host exited non-zero
 ├── DeployError               a deploy stage failed; the serving release is untouched
 │    └── HealthCheckFailed
 └── LockHeld                  another deploy holds the app's lock (exit 75, try again)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from shipyard.host.steps import Result

# A sentence that ends in an embedded text which ends in its own period, as in
# f"cannot run {path}: {err}." with a CalledProcessError ("... exit status 1."): the doubled
# period (or an ellipsis plus one) at the end of a word, before a space or the end.
_DOUBLED_STOP = re.compile(r"(?<=[^./\s])(\.\.\.)?\.\.?(?=\s|$)")
_QUOTED = "  |"  # how messages quote a program's output, which is shown as it was


def _one_stop(text: str) -> str:
    return "\n".join(
        line
        if line.startswith(_QUOTED)
        else _DOUBLED_STOP.sub(lambda found: found.group(1) or ".", line)
        for line in text.split("\n")
    )


class ShipyardError(Exception):
    """An error with a message fit for the user: what, where, and what to do next."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = _one_stop(message)
        super().__init__(message)
        self.message = message
        self.hint = _one_stop(hint) if hint is not None else None

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n{self.hint}"


class SpecError(ShipyardError, ValueError):
    """The app spec is missing or invalid."""


class UsageError(ShipyardError, ValueError):
    """A command-line argument is wrong."""

    exit_code: ClassVar[int] = 2


class BuildError(ShipyardError):
    """The release artifact could not be built."""


class TestsFailed(BuildError):
    """The project's test suite failed, so nothing was deployed."""

    __test__ = False  # not a pytest test class


class HostError(ShipyardError):
    """The target lacks something shipyard needs."""

    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{host}: {message}", hint=hint)
        self.host = host


class CommandFailed(ShipyardError):
    """A command exited non-zero; carries its result so the output tail can be shown."""

    def __init__(self, result: Result, *, what: str | None = None, hint: str | None = None) -> None:
        self.result = result
        head = what or f"command failed: {result.command}"
        super().__init__(
            f"{head} (exit {result.exit_code} on {result.host}).\n{result.output_tail()}",
            hint=hint,
        )


class DeployError(ShipyardError):
    """A deploy stage failed before or during the switch; the serving release keeps serving."""


class HealthCheckFailed(DeployError):
    """The new release did not answer its health check in time."""


class LockHeld(ShipyardError):
    """Another deploy of the same app is running."""

    exit_code: ClassVar[int] = 75


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program was, like Ctrl-C's KeyboardInterrupt: a
    switch under way switches back as it does for Ctrl-C, and the program exits 128 + the
    signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
