"""The one deploy API: what every target does, and the typed results it returns.

The CLI calls a `Target` and renders what comes back; it never asks which kind of target it
holds. The local machine and ssh fleets implement it today (targets/local.py, targets/ssh.py);
a systemd host or an export to an engine is one more implementation behind the same verbs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from shipyard.events import Progress
from shipyard.host.supervisor import UP_STATES
from shipyard.plan import Plan
from shipyard.spec.model import Spec

# Runs `work` (stopping the old slot once nginx's old workers are done) where the command
# need not wait for it; the second argument is the log its output goes to. None: run it now.
Background = Callable[[Callable[[], None], str], None]


@dataclass(frozen=True)
class Deployed:
    release: str
    url: str
    switched: list[str]  # hosts that switched to the release
    unchanged: list[str]  # hosts that already served it
    sent_bytes: int = 0


@dataclass(frozen=True)
class TlsRenewed:
    renewed: dict[str, bool]  # host -> a new certificate is served
    fingerprints: dict[str, str]  # host -> sha256 of the certificate served


@dataclass(frozen=True)
class RolledBack:
    releases: list[str]  # what is live again (one per host, usually the same)
    hosts: list[str]


@dataclass(frozen=True)
class Restarted:
    release: str
    hosts: list[str]
    slot: str = ""


@dataclass(frozen=True)
class Scaled:
    scale: dict[str, int]  # the counts now set (the same on every host)
    hosts: list[str]
    restarted: str | None = None  # the release restarted (web scaled), if any


@dataclass(frozen=True)
class Process:
    name: str
    state: str
    pid: int
    description: str


@dataclass(frozen=True)
class HostStatus:
    """One host's view of the app; `error` when the host could not be asked."""

    host: str
    role: str = "web"  # "web" | "lb"
    release: str | None = None
    slot: str | None = None
    healthy: bool = False
    health: str = ""
    serving_release: str | None = None
    processes: list[Process] = field(default_factory=list)
    scale: dict[str, int] = field(default_factory=dict)  # set with `shipyard scale`
    error: str | None = None
    agent_version: str = ""
    runtime: list[str] = field(default_factory=list)  # what is wrong under the app (heal.py)

    @property
    def ok(self) -> bool:
        whole = self.healthy and not self.down and not self.runtime
        return self.error is None and (self.role == "lb" or whole)

    @property
    def down(self) -> list[Process]:
        """The processes that should be running and are not (crash-looping, stopped). One
        STARTING is up: it has not yet been up for its `startsecs` (the web server, right
        after a start that its health check already passed; a worker supervisord restarts,
        which ends RUNNING or, crash-looping, BACKOFF and FATAL)."""
        return [p for p in self.processes if p.state not in UP_STATES]


@dataclass(frozen=True)
class Status:
    app: str
    target: str
    url: str
    hosts: list[HostStatus]

    @property
    def healthy(self) -> bool:
        return bool(self.hosts) and all(host.ok for host in self.hosts)


@dataclass(frozen=True)
class ReleaseRow:
    id: str
    version: str
    git_sha: str
    status: str
    deployed_at: str
    on_disk: bool
    live: bool


@dataclass(frozen=True)
class HostReleases:
    host: str
    releases: list[ReleaseRow]


@dataclass(frozen=True)
class FrozenPin:
    name: str
    version: str
    sha256: str  # of the wheel the release installed

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class Frozen:
    """The pinned dependencies of the release live on `host`."""

    host: str
    release: str
    pins: list[FrozenPin]


@dataclass(frozen=True)
class HostProblem:
    host: str
    problem: str  # "" when the host is ready


@dataclass(frozen=True)
class Checked:
    app: str
    target: str
    entry: str
    hosts: list[HostProblem]


@dataclass(frozen=True)
class ConfigChanged:
    keys: list[str]
    hosts: list[str]
    restarted: str | None = None  # the release restarted with it (None: not deployed yet)


@dataclass(frozen=True)
class ProcessesChanged:
    """What start or stop did, per host: the processes it started or stopped."""

    hosts: dict[str, list[str]]


@dataclass(frozen=True)
class Destroyed:
    app: str
    hosts: list[str]  # where it was removed from
    data_kept_in: str | None  # where the data stays (None: purged)
    absent: list[str] = field(default_factory=list)  # where there was nothing of it
    stopped: list[str] = field(default_factory=list)  # orphans stopped (supervisord had died)


@dataclass(frozen=True)
class Provisioned:
    hosts: dict[str, list[str]]  # per host, what was (or with a dry run, would be) done
    dry_run: bool


class Target(Protocol):
    """Where an app is deployed: every command of the CLI is one of these calls."""

    name: str
    spec: Spec

    def check(self) -> Checked: ...

    def plan(self, *, skip_tests: bool = False) -> list[Plan]:
        """What `deploy` would do now, one plan per host; changes nothing."""
        ...

    def deploy(self, progress: Progress, *, skip_tests: bool, lock_wait: float) -> Deployed: ...

    def rollback(self, progress: Progress, *, to: str | None, lock_wait: float) -> RolledBack: ...

    def restart(self, progress: Progress, *, lock_wait: float) -> Restarted: ...

    def scale(self, progress: Progress, changes: dict[str, int], *, lock_wait: float) -> Scaled:
        """Set process counts (`web`: the app server's workers), kept across deploys."""
        ...

    def status(self) -> Status: ...

    def releases(self) -> list[HostReleases]: ...

    def freeze(self) -> list[Frozen]:
        """The live release's exact pins, per web host."""
        ...

    def logs(
        self, process: str | None, lines: int, follow: bool, emit: Callable[[str], None]
    ) -> None: ...

    def run_argv(self, command: list[str], host: str | None) -> list[str]:
        """The argv that runs `command` in the live release's environment (to exec)."""
        ...

    def config_get(self) -> dict[str, str]: ...

    def config_set(self, progress: Progress, updates: dict[str, str]) -> ConfigChanged: ...

    def config_unset(self, progress: Progress, keys: list[str]) -> ConfigChanged: ...

    def start(self) -> ProcessesChanged: ...

    def stop(self) -> ProcessesChanged: ...

    def destroy(self, *, purge: bool) -> Destroyed: ...

    def provision(self, progress: Progress, *, dry_run: bool) -> Provisioned: ...

    def tls_renew(self, *, force: bool, lock_wait: float) -> TlsRenewed: ...

    def close(self) -> None: ...
