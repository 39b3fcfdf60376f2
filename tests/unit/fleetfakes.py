"""A fleet without servers: fake agents that answer the typed protocol from in-memory host
state, and record every request, so the fleet's strategies can be tested without ssh."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from shipyard.build.artifact import BuildInputs
from shipyard.build.platforms import Platform
from shipyard.errors import BuildError, HostError, TestsFailed
from shipyard.fleet.fleet import Builder, Fleet
from shipyard.fleet.remote import RemoteError, RemoteHost, lib_id, runtime_id
from shipyard.fleet.ssh import ControlDir, SSHConnection, SSHOptions
from shipyard.host import protocol as p
from shipyard.host import wire
from shipyard.host.artifact import MANIFEST, Artifact, Manifest, WheelRef
from shipyard.host.python import PythonInfo
from shipyard.host.setup_command import SetupRecord, setup_step
from shipyard.host.steps import Command, Connection, Result
from shipyard.plan import Plan as DeployPlan
from shipyard.spec.address import SSHAddress
from shipyard.spec.model import Spec, TargetSpec

R = TypeVar("R", bound=p.Reply)
OTHER_SLOT = {"blue": "green", "green": "blue", None: "blue"}


@dataclass
class FakeHost:
    """What one host's agent knows: the app's releases, its config, and failures to inject
    (op -> error type, e.g. {"commit": "HealthCheckFailed"}; "connect" fails the session)."""

    live: str | None = None
    slot: str | None = None
    installed: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # releases that were live, oldest first
    config: dict[str, str] = field(default_factory=dict)
    fail: dict[str, str] = field(default_factory=dict)
    reuse_fails: bool = False  # its copy of the older artifact changed: reuse is refused
    staged: str | None = None
    received: list[list[str]] = field(default_factory=list)  # each receive's payload paths
    platform: str = "linux-x86_64"
    python: str = "3.11.2"
    setup: SetupRecord | None = None  # the app's setup is recorded as done here
    setup_runs: int = 0  # times its setup command ran here
    setup_fails: bool = False
    workdir: str = ""  # where its live release runs, when not the release itself (a tree)


@dataclass
class FakeFleet:
    """The hosts' states and the log of (host, request) in the order the agents got them."""

    hosts: dict[str, FakeHost]
    setup: str = ""  # the setup command of the releases deployed
    log: list[tuple[str, p.Request[Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    opened: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)
    tls_files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # host -> name -> bytes

    def requests(self, kind: type[p.Request[Any]], host: str | None = None) -> list[Any]:
        return [r for h, r in self.log if isinstance(r, kind) and host in (None, h)]

    def ops(self, host: str) -> list[str]:
        return [r.op for h, r in self.log if h == host]


class FakeAgent:
    """One session: answers each request from its host's state, as the real agent would."""

    def __init__(self, name: str, world: FakeFleet) -> None:
        self.name = name
        self.world = world
        self.state = world.hosts[name]

    def call(self, request: p.Request[R], files: Iterable[wire.FileEntry] = ()) -> R:
        with self.world.lock:
            self.world.log.append((self.name, request))
        if kind := self.state.fail.get(request.op):
            code = 75 if kind == "LockHeld" else 1
            detail = p.ErrorDetail(type=kind, message=f"{request.op} failed", exit_code=code)
            raise RemoteError(self.name, request.op, detail)
        handler: Callable[[Any, list[wire.FileEntry]], p.Reply] = getattr(self, f"_{request.op}")
        # through the request's own reply model, as the real client parses the agent's reply
        return request.parse_reply(handler(request, list(files)).model_dump(mode="json"))

    def close(self) -> None:
        with self.world.lock:
            self.world.closed.append(self.name)

    def _app_state(self) -> p.StateReply:
        s = self.state
        return p.StateReply(
            live=s.live,
            slot=s.slot,
            installed=list(s.installed),
            config_keys=sorted(s.config),
            setup_done=s.setup is not None,
            workdir=s.workdir,
        )

    def _hello(self, request: p.Hello, files: list[wire.FileEntry]) -> p.HelloReply:
        return hello_reply(self.state, self._app_state() if request.app else None)

    def _lock(self, request: p.Lock, files: list[wire.FileEntry]) -> p.Done:
        return p.Done()

    def _state(self, request: p.State, files: list[wire.FileEntry]) -> p.StateReply:
        return self._app_state()

    def _receive(self, request: p.Receive, files: list[wire.FileEntry]) -> p.ReceiveReply:
        self.state.received.append([entry.path for entry in files])
        if request.reuse is not None and self.state.reuse_fails:
            return p.ReceiveReply(received=len(files), reuse_failed=list(request.reuse.files))
        self.state.installed.append(request.release)
        return p.ReceiveReply(received=len(files))

    def _config_get(self, request: p.ConfigGet, files: list[wire.FileEntry]) -> p.ConfigReply:
        return p.ConfigReply(config=dict(self.state.config))

    def _config_put(self, request: p.ConfigPut, files: list[wire.FileEntry]) -> p.Done:
        self.state.config = dict(request.config)
        return p.Done()

    def _stage(self, request: p.Stage, files: list[wire.FileEntry]) -> p.StageReply:
        s, notes = self.state, []
        if request.release_cmd or request.setup_done_on:  # the host's own decision, as there
            step = setup_step(
                self.world.setup,
                s.setup,
                s.live,
                request.release,
                "t",
                run_here=request.release_cmd,
                done_on=request.setup_done_on,
            )
            if step.run:
                s.setup_runs += 1
                if s.setup_fails:
                    detail = p.ErrorDetail(type="CommandFailed", message="the setup command failed")
                    raise RemoteError(self.name, request.op, detail)
                step = replace(step, record=SetupRecord("t", request.release, self.world.setup))
            if step.record is not None:
                s.setup = step.record
                notes.append(step.note)
        s.staged = request.release
        return p.StageReply(slot=OTHER_SLOT[s.slot], previous=s.live, notes=notes)

    def _commit(self, request: p.Commit, files: list[wire.FileEntry]) -> p.CommitReply:
        s = self.state
        assert s.staged is not None, f"{self.name}: commit with nothing staged"
        previous, s.live, s.staged = s.live, s.staged, None
        if previous:
            s.history.append(previous)
        s.slot = OTHER_SLOT[s.slot]
        return p.CommitReply(release=s.live, slot=s.slot, previous=previous)

    def _abort(self, request: p.Abort, files: list[wire.FileEntry]) -> p.AbortReply:
        aborted, self.state.staged = self.state.staged is not None, None
        return p.AbortReply(aborted=aborted)

    def _rollback_target(
        self, request: p.RollbackTarget, files: list[wire.FileEntry]
    ) -> p.RollbackTargetReply:
        earlier = [r for r in self.state.history if r != self.state.live]
        return p.RollbackTargetReply(release=request.to or earlier[-1])

    def _restart(self, request: p.Restart, files: list[wire.FileEntry]) -> p.RestartReply:
        if request.config is not None:
            self.state.config = dict(request.config)
        live = self.state.live
        if live is None:
            return p.RestartReply(outcome=None)
        slot = OTHER_SLOT[self.state.slot]
        return p.RestartReply(outcome=p.CommitReply(release=live, slot=slot, previous=live))

    def _start(self, request: p.Start, files: list[wire.FileEntry]) -> p.ProcessesReply:
        return p.ProcessesReply(processes=[f"{request.spec.name}-web-blue"])

    def _stop(self, request: p.Stop, files: list[wire.FileEntry]) -> p.ProcessesReply:
        return p.ProcessesReply(processes=[f"{request.spec.name}-web-blue"])

    def _destroy(self, request: p.Destroy, files: list[wire.FileEntry]) -> p.Done:
        self.state.live = None
        return p.Done()

    def _status(self, request: p.Status, files: list[wire.FileEntry]) -> p.StatusReply:
        return p.StatusReply(
            app=request.spec.name,
            url="http://127.0.0.1:80/",
            base_dir="/srv/shipyard",
            release=self.state.live,
            slot=self.state.slot,
            supervisord=True,
            processes=[
                p.ProcessInfo(name="flaskr-web-blue", state="RUNNING", pid=7, description="")
            ],
            healthy=self.state.live is not None,
            health="200",
            serving_release=self.state.live,
        )

    def _releases(self, request: p.Releases, files: list[wire.FileEntry]) -> p.ReleasesReply:
        return p.ReleasesReply(
            releases=[
                p.ReleaseInfo(id=r, created="t", on_disk=True, live=r == self.state.live)
                for r in reversed(self.state.installed)
            ]
        )

    def _freeze(self, request: p.Freeze, files: list[wire.FileEntry]) -> p.FreezeReply:
        if self.state.live is None:
            raise RemoteError(
                self.name,
                "freeze",
                p.ErrorDetail(type="DeployError", message="not deployed", exit_code=1),
            )
        pin = p.FrozenPin(name="flask", version=f"3.1.{len(self.state.live)}", sha256="ab")
        return p.FreezeReply(release=self.state.live, pins=[pin])

    def _plan(self, request: p.Plan, files: list[wire.FileEntry]) -> p.PlanReply:
        plan = DeployPlan(app=request.spec.name, host="", release=request.release, stages=[])
        return p.PlanReply(plan=plan)

    def _lb(self, request: p.Lb, files: list[wire.FileEntry]) -> p.LbReply:
        return p.LbReply(changed=True)

    def _lb_remove(self, request: p.LbRemove, files: list[wire.FileEntry]) -> p.LbRemoveReply:
        return p.LbRemoveReply(removed=True)

    def _tls(self, request: p.Tls, files: list[wire.FileEntry]) -> p.TlsReply:
        with self.world.lock:
            self.world.tls_files[self.name] = {f.path: f.source.read_bytes() for f in files}
        return p.TlsReply(changed=True)


def hello_reply(state: FakeHost, app: p.StateReply | None) -> p.HelloReply:
    return p.HelloReply(
        protocol=p.PROTOCOL_VERSION,
        version="test",
        runtime="rt",
        interpreter="/usr/bin/python3",
        python=state.python,
        platform=state.platform,
        libc="glibc 2.36",
        user="root",
        wheels={},
        artifacts=list(state.installed),
        state=app,
    )


class FakeReach:
    """The fleet's way to its agents, to fake ones: each `open` is a new session."""

    def __init__(self, world: FakeFleet) -> None:
        self.world = world
        self.readied: list[str] = []

    def ready(self, fleet: Fleet, host: RemoteHost) -> None:
        if self.world.hosts[host.name].fail.get("connect"):
            raise HostError(host.name, "cannot reach the host over SSH")
        with self.world.lock:
            self.readied.append(host.name)

    def open(
        self, fleet: Fleet, host: RemoteHost, hello: p.Hello
    ) -> tuple[FakeAgent, p.HelloReply]:
        if self.world.hosts[host.name].fail.get("connect"):
            raise HostError(host.name, "cannot reach the host over SSH")
        agent = FakeAgent(host.name, self.world)
        with self.world.lock:
            self.world.opened.append(host.name)
        return agent, agent.call(hello)


def make_fleet(tmp: Path, world: FakeFleet, lb: str | None = None, **target: Any) -> Fleet:
    """A Fleet of the world's hosts (all web but `lb`), reached through fake agents."""
    web = [name for name in world.hosts if name != lb]
    spec = TargetSpec.model_validate({"hosts": web, **({"lb": lb} if lb else {}), **target})
    hosts = [fake_remote(name, tmp, "lb" if name == lb else "web") for name in world.hosts]
    return Fleet("prod", spec, hosts, tmp / "cache", ControlDir(), reach=FakeReach(world))


def fake_remote(name: str, tmp: Path, role: str, conn: SSHConnection | None = None) -> RemoteHost:
    if conn is None:
        conn = SSHConnection(SSHAddress.parse(name), SSHOptions(), tmp)
        conn._config = {"user": "root"}  # what `ssh -G` would say: no ssh is run
    return RemoteHost(name, role, conn, PurePosixPath("/srv/shipyard"), "0.0.0.0:80")


# --- hosts' shells: facts, provisioning and followed logs without ssh ---------------------------


def facts_text(**changes: str) -> str:
    """What the facts script prints on a provisioned Debian host, with `changes`."""
    fields = {
        "os": "debian 12",
        "python": "3.11.2 linux-x86_64",
        "libc": "glibc 2.36",
        "venv": "yes",
        "python_path": "/usr/bin/python3",
        "nginx": "/usr/sbin/nginx",
        "login": "root",
        "app_user": "yes",
        "systemd": "",
        "apt": "/usr/bin/apt-get",
        "runtime": runtime_id("3.11", "/usr/bin/python3"),
        "lib": lib_id(),
        "disk_free_kb": str(10 * 1024 * 1024),
        **changes,
    }
    return "".join(f"{key}={value}\n" for key, value in fields.items())


class FakeSSH(SSHConnection):
    """An ssh connection that reaches no host. The facts script is answered with `facts` (or
    fails with `facts_exit`); any other command succeeds printing `stdout`, unless its script
    contains `fail_on`; `popen` (followed logs) runs `local` on this machine instead."""

    def __init__(self, name: str, tmp: Path, facts: str = "", *, facts_exit: int = 0) -> None:
        super().__init__(SSHAddress.parse(name), SSHOptions(), tmp)
        self._config = {"user": "root"}
        self.facts = facts or facts_text()
        self.facts_exit = facts_exit
        self.fail_on: str | None = None
        self.stdout = "changed"
        self.local: list[str] = ["true"]
        self.ran: list[Command] = []
        self.sent: list[bytes | Path | None] = []  # each command's stdin
        self.popened: list[Command] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.closed = 0

    @property
    def scripts(self) -> list[str]:
        """The provisioning scripts run (`sh -c SCRIPT`), not the facts script."""
        return [c.argv[2] for c in self.ran if c.argv[:2] == ("sh", "-c")]

    def run_input(self, command: Command, data: bytes | Path | None) -> Result:
        self.ran.append(command)
        self.sent.append(data)
        if command.argv[:2] == ("sh", "-s"):
            if self.facts_exit:
                return Result(
                    self.host, command, self.facts_exit, "", "sudo: a password is required", 0.0
                )
            return Result(self.host, command, 0, self.facts, "", 0.0)
        if self.fail_on is not None and self.fail_on in command.argv[-1]:
            return Result(self.host, command, 100, "", "E: Unable to locate package nginx", 0.0)
        return Result(self.host, command, 0, self.stdout, "", 0.0)

    def popen(self, command: Command, *, tty: bool = False) -> subprocess.Popen[bytes]:
        self.popened.append(command)
        proc = subprocess.Popen(
            self.local, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        self.closed += 1


def ssh_fleet(tmp: Path, conns: dict[str, FakeSSH], lb: str | None = None, **target: Any) -> Fleet:
    """A Fleet over fake ssh connections (all web but `lb`), reached the real way (SSHReach)."""
    web = [name for name in conns if name != lb]
    spec = TargetSpec.model_validate({"hosts": web, **({"lb": lb} if lb else {}), **target})
    hosts = [
        fake_remote(name, tmp, "lb" if name == lb else "web", conn) for name, conn in conns.items()
    ]
    return Fleet("prod", spec, hosts, tmp / "cache", ControlDir())


# --- the build on this machine --------------------------------------------------------------


@dataclass
class FakeBuild:
    """The deploying machine's side of a deploy: artifacts made by make_artifact, one per
    platform built for; `fail` makes "build" or "tests" fail. `calls` is what was asked."""

    cache: Path
    release: str
    foreign_release: str = "arm333"
    fail: str | None = None
    calls: list[str] = field(default_factory=list)
    platforms: list[Platform | None] = field(default_factory=list)

    def builder(self) -> Builder:
        return Builder(self.gather_inputs, self.fill_wheels, self.build, self.run_tests)

    def gather_inputs(
        self, conn: Connection, project: Path, spec: Spec, cache: Path, platform: Platform | None
    ) -> BuildInputs:
        self.calls.append("gather inputs")
        self.platforms.append(platform)
        python = PythonInfo("/usr/bin/python3", "3.11.2")
        return BuildInputs("src", "flask==3.0\n", python, spec, platform)

    def fill_wheels(self, conn: Connection, cache: Path, inputs: BuildInputs) -> object:
        self.calls.append("fill wheels")
        return {}

    def build(
        self, conn: Connection, project: Path, spec: Spec, cache: Path, inputs: BuildInputs
    ) -> Artifact:
        self.calls.append("build")
        if self.fail == "build":
            raise BuildError("the app wheel did not build: setup.py error")
        foreign = inputs.foreign_platform is not None
        return make_artifact(cache, self.foreign_release if foreign else self.release)

    def run_tests(
        self, conn: Connection, project: Path, spec: Spec, cache: Path, inputs: BuildInputs
    ) -> str:
        self.calls.append("tests")
        if self.fail == "tests":
            raise TestsFailed("tests failed: 1 failed, 11 passed")
        return "12 passed"


def make_artifact(cache: Path, release: str, *, wheels: dict[str, bytes] | None = None) -> Artifact:
    """A small artifact in the cache's artifacts/, its wheels in the cache's store."""
    root = cache / "artifacts" / release
    (root / "app").mkdir(parents=True)
    (root / "app" / "flaskr-1.0-py3-none-any.whl").write_bytes(b"app " + release.encode())
    (root / "static" / "0-static").mkdir(parents=True)
    (root / "static" / "0-static" / "style.css").write_text("body {}\n")
    (cache / "wheels").mkdir(parents=True, exist_ok=True)
    refs = []
    for name, data in (wheels or {}).items():
        (cache / "wheels" / name).write_bytes(data)
        refs.append(WheelRef(name, wire.sha256_of(cache / "wheels" / name)))
    manifest = Manifest(
        id=release,
        app="flaskr",
        created="t",
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="",
        app_wheel=WheelRef("flaskr-1.0-py3-none-any.whl", "x"),
        wheels=refs,
        static={"/static": "0-static"},
    )
    (root / MANIFEST).write_text(manifest.to_json())
    return Artifact(root, manifest, reused=False)


def example_spec(**changes: Any) -> Spec:
    return Spec.model_validate(
        {
            "name": "flaskr",
            "entry": "flaskr:create_app()",
            "release": "flask --app flaskr init-db",
            **changes,
        }
    )
