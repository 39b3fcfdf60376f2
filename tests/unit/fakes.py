"""Fakes of a host's connection, supervisord and nginx, for unit tests of the switch and the
release state machine without servers.

They share one `journal` (a list of lines such as "supervisor start flaskr-web-blue" or
"nginx wait_drained"), so a test can assert on the order in which things happened across them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from shipyard.errors import CommandFailed, DeployError
from shipyard.host.health import Healthy, Probe
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.host.servers import Servers
from shipyard.host.steps import Command, Result, Step, Symlink, Upload
from shipyard.host.supervisor import UP_STATES, ProcessInfo, SupervisorClient

FAKE_HOST = "fake"
NGINX = NginxBinary("/usr/sbin/nginx", None, None)


class UnexpectedCommand(AssertionError):
    """The sentinel: a command no test told the fake connection to expect."""


@dataclass(frozen=True)
class Removed:
    path: PurePosixPath


@dataclass(frozen=True)
class MadeDirs:
    paths: tuple[PurePosixPath, ...]


Recorded = Step | Removed | MadeDirs


@dataclass(frozen=True)
class Answer:
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""


class RecordingConnection:
    """A Connection over an in-memory file system; records every step it is given.

    Commands are answered by the longest argv prefix given to `answer()`; any other command
    raises UnexpectedCommand, so a test cannot pass on a command it did not foresee.
    """

    def __init__(self, journal: list[str] | None = None) -> None:
        self.host = FAKE_HOST
        self.files: dict[PurePosixPath, bytes] = {}
        self.modes: dict[PurePosixPath, int] = {}
        self.symlinks: dict[PurePosixPath, str] = {}
        self.dirs: set[PurePosixPath] = set()
        self.recorded: list[Recorded] = []
        self.journal = journal if journal is not None else []
        self._answers: dict[tuple[str, ...], Answer] = {}

    def answer(self, prefix: Sequence[str], exit_code: int = 0, stdout: str = "") -> None:
        self._answers[tuple(prefix)] = Answer(exit_code, stdout, "" if exit_code == 0 else stdout)

    @property
    def commands(self) -> list[tuple[str, ...]]:
        return [step.argv for step in self.recorded if isinstance(step, Command)]

    @property
    def uploads(self) -> list[Upload]:
        return [step for step in self.recorded if isinstance(step, Upload)]

    def text(self, path: Path) -> str:
        return self.files[PurePosixPath(path)].decode()

    # --- the Connection protocol

    def run(self, command: Command) -> Result:
        self._record(command, f"run {command}")
        known = [p for p in self._answers if command.argv[: len(p)] == p]
        if not known:
            raise UnexpectedCommand(f"no answer for {command.argv}")
        answer = self._answers[max(known, key=len)]
        return Result(self.host, command, answer.exit_code, answer.stdout, answer.stderr, 0.0)

    def put(self, upload: Upload) -> None:
        self._record(upload, f"put {upload.dest}")
        self.files[upload.dest] = upload.content
        self.modes[upload.dest] = upload.mode

    def link(self, symlink: Symlink) -> None:
        self._record(symlink, f"link {symlink.link} -> {symlink.target}")
        self.symlinks[symlink.link] = symlink.target

    def read(self, path: PurePosixPath) -> bytes | None:
        return self.files.get(path)

    def remove(self, path: PurePosixPath) -> None:
        self._record(Removed(path), f"remove {path}")
        self.files.pop(path, None)
        self.symlinks.pop(path, None)

    def make_dirs(self, paths: Sequence[PurePosixPath]) -> None:
        self._record(MadeDirs(tuple(paths)), "make_dirs " + " ".join(map(str, paths)))
        self.dirs.update(paths)

    def close(self) -> None:
        pass

    def _record(self, step: Recorded, line: str) -> None:
        self.recorded.append(step)
        self.journal.append(line)


_PROGRAM = re.compile(r"^\[program:(?P<name>[^\]]+)\]$", re.M)
_SOCKET = re.compile(r"(?:unix:|--socket )(\S+\.sock)")
_LOG = re.compile(r"^stdout_logfile = (\S+)$", re.M)


@dataclass
class Program:
    name: str
    conf: str  # its section of the program file
    state: str = "STOPPED"
    pid: int = 0

    @property
    def socket(self) -> str | None:
        found = _SOCKET.search(self.conf)
        return found.group(1) if found else None

    @property
    def log(self) -> PurePosixPath:
        found = _LOG.search(self.conf)
        assert found, self.conf
        return PurePosixPath(found.group(1))


@dataclass
class Crash:
    state: str  # BACKOFF while supervisord retries, FATAL once it gave up
    output: bytes  # what the program printed before it died


class FakeSupervisor:
    """supervisord over the fake connection: `update()` loads the program files the switch
    wrote there, as `supervisorctl update` would. `crash(name)` makes a program die when
    started, printing into its log; `answers[name]` is the HTTP status a running program
    answers requests with (200 unless set)."""

    def __init__(self, conn: RecordingConnection, host: HostLayout) -> None:
        self.conn = conn
        self.host = host
        self.running = True
        self.programs: dict[str, Program] = {}
        self.crashes: dict[str, Crash] = {}
        self.hanging: dict[str, bytes] = {}
        self.answers: dict[str, int] = {}
        self.closed = 0
        self._next_pid = 1000

    def crash(self, name: str, output: str, state: str = "BACKOFF") -> None:
        self.crashes[name] = Crash(state, output.encode())

    def hang(self, name: str, output: str) -> None:
        """The program runs, prints `output`, and never binds its socket (stuck, say)."""
        self.hanging[name] = output.encode()

    def state(self, name: str) -> str | None:
        program = self.programs.get(name)
        return program.state if program else None

    def status_at(self, socket: Path) -> int | None:
        """The HTTP status a request on `socket` gets; None if no running program binds it."""
        for program in self.programs.values():
            # STARTING: spawned, within its startsecs; it has bound its socket as RUNNING has
            running = program.state in UP_STATES and program.name not in self.hanging
            if program.socket == str(socket) and running:
                return self.answers.get(program.name, 200)
        return None

    def probe_socket(self, socket: Path, path: str, host_header: str, healthy: Healthy) -> Probe:
        """The health probe on an app's socket: answers if a running program binds it."""
        status = self.status_at(socket)
        if status is None:
            return Probe(False, f"{socket} is not bound yet")
        return healthy.judge(status)

    # --- SupervisorClient

    def close(self) -> None:
        self.closed += 1

    def is_running(self) -> bool:
        return self.running

    def processes(self) -> list[ProcessInfo]:
        return [self._info(p) for p in self.programs.values()]

    def process(self, name: str) -> ProcessInfo | None:
        program = self.programs.get(name)
        return self._info(program) if program else None

    def update(self) -> list[str]:
        configured = self._configured()
        self.conn.journal.append("supervisor update")
        for name in set(self.programs) - set(configured):
            del self.programs[name]  # removed groups are stopped, then dropped
        changed = []
        for name, conf in configured.items():
            if name in self.programs and self.programs[name].conf == conf:
                continue
            self.programs[name] = Program(name, conf)
            self._launch(self.programs[name])  # autostart = true
            changed.append(name)
        return sorted(changed)

    def retire(self, group: str) -> None:
        self.conn.journal.append(f"supervisor retire {group}")
        if group in self.programs:
            self.programs[group].state = "STOPPED"

    def wait_stopped(self, name: str, timeout: float) -> None:
        self.conn.journal.append(f"supervisor wait_stopped {name}")
        if (program := self.programs.get(name)) and program.state in ("RUNNING", "BACKOFF"):
            program.state = "STOPPED"

    def start(self, name: str, wait: bool = False) -> None:
        self.conn.journal.append(f"supervisor start {name}")
        program = self.programs[name]  # a KeyError stands for supervisord's BAD_NAME fault
        if program.state != "RUNNING":
            self._launch(program)

    def stop(self, name: str, wait: bool = True) -> None:
        self.conn.journal.append(f"supervisor stop {name}")
        if name in self.programs:
            self.programs[name].state = "STOPPED"

    def signal(self, name: str, signal: str) -> None:
        self.conn.journal.append(f"supervisor signal {name} {signal}")

    def _launch(self, program: Program) -> None:
        crash = self.crashes.get(program.name)
        if crash is None:
            self._next_pid += 1
            program.state, program.pid = "RUNNING", self._next_pid
            self._print(program, self.hanging.get(program.name, b""))
        else:
            program.state, program.pid = crash.state, 0
            self._print(program, crash.output)

    def _print(self, program: Program, output: bytes) -> None:
        if output:
            self.conn.files[program.log] = self.conn.files.get(program.log, b"") + output

    def _configured(self) -> dict[str, str]:
        sections: dict[str, str] = {}
        programs = PurePosixPath(self.host.programs)
        for path, content in self.conn.files.items():
            if path.parent != programs or path.suffix != ".conf":
                continue
            text = content.decode()
            starts = list(_PROGRAM.finditer(text))
            for here, after in zip(starts, [*starts[1:], None], strict=True):
                sections[here["name"]] = text[here.start() : after.start() if after else None]
        return sections

    def _info(self, program: Program) -> ProcessInfo:
        return ProcessInfo(program.name, program.name, program.state, program.pid, "", 0)


_UPSTREAM = re.compile(r"unix:(\S+?)[;\s]")
_RELEASE = re.compile(r"X-Shipyard-Release (\S+) always;")


@dataclass
class FakeReload:
    """A Reload whose waits are recorded in the journal. With `linger`, its old workers keep
    what they hold open (WebSockets) until the old slot's server closes them."""

    journal: list[str]
    waits: list[str] = field(default_factory=list)
    linger: bool = False

    def wait_handed_over(self) -> None:
        self.waits.append("handed_over")
        self.journal.append("nginx wait_handed_over")

    def wait_drained(self) -> None:
        self.waits.append("drained")
        self.journal.append("nginx wait_drained")

    def is_drained(self) -> bool:
        if self.linger:
            return False
        self.wait_drained()
        return True


@dataclass(frozen=True)
class Served:
    socket: str
    release: str


class FakeNginx:
    """nginx as the switch sees it: a reload reads the site files from the fake connection,
    and a request through it is answered by the release they point at, if its server runs.

    `reject` makes `nginx -t` fail, `refuse` makes a reload be refused (a port it cannot bind),
    `broken` makes requests through nginx fail while the app itself is healthy.
    """

    def __init__(self, conn: RecordingConnection, supervisor: FakeSupervisor) -> None:
        self.conn = conn
        self.supervisor = supervisor
        self.serving: dict[PurePosixPath, Served] = {}
        self.reloads: list[FakeReload] = []
        self.reject = False
        self.refuse = False
        self.broken = False
        self.stale: str | None = None  # the release that answers instead, if any
        self.probes: list[Probe] = []
        self.linger = False  # old workers hold WebSockets after each reload from now on

    def reload(
        self,
        conn: object,
        host: HostLayout,
        supervisor: SupervisorClient,
        *,
        drain: bool = True,
    ) -> FakeReload:
        if self.reject:
            command = Command((NGINX.path, "-t", "-q"))
            result = Result(FAKE_HOST, command, 1, "", "[emerg] unexpected end of file", 0.0)
            self.conn.journal.append("nginx -t rejected")
            raise CommandFailed(result, what="nginx rejected the configuration (nginx -t)")
        if self.refuse:
            self.conn.journal.append("nginx refused")
            raise DeployError("nginx did not take the new configuration: bind() failed")
        sites = PurePosixPath(host.nginx_sites)
        self.serving = {
            path: Served(_UPSTREAM.findall(text)[0], _RELEASE.findall(text)[0])
            for path, content in self.conn.files.items()
            if path.parent == sites and (text := content.decode())
        }
        self.conn.journal.append(f"nginx reload (drain={drain})")
        handle = FakeReload(self.conn.journal, linger=self.linger)
        self.reloads.append(handle)
        if drain:
            handle.wait_drained()
        return handle

    def release_served(self) -> str | None:
        served = list(self.serving.values())
        return served[0].release if served else None

    def probe_url(self, url: str, host_header: str, healthy: Healthy) -> Probe:
        self.probes.append(self._answer(host_header, healthy))
        return self.probes[-1]

    def _answer(self, host_header: str, healthy: Healthy) -> Probe:
        if self.broken:
            return Probe(False, "HTTP 502 (healthy is [200])")
        if self.stale:
            return Probe(True, "HTTP 200", self.stale)
        for served in self.serving.values():
            status = self.supervisor.status_at(Path(served.socket))
            if status is not None:
                return healthy.judge(status, served.release, Path(served.socket).stem)
        return Probe(False, "ConnectionRefusedError: [Errno 111] Connection refused")


@dataclass
class FakeHost:
    """A connection, supervisord and nginx that know each other, and the Servers seam that
    hands them to the switch and the state machine."""

    layout: HostLayout
    journal: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.conn = RecordingConnection(self.journal)
        self.supervisor = FakeSupervisor(self.conn, self.layout)
        self.nginx = FakeNginx(self.conn, self.supervisor)
        self.runtime_stopped = False
        self.connections: dict[Path, int] = {}  # open on an app socket (WebSockets), by path

    @property
    def servers(self) -> Servers:
        return Servers(
            ensure_runtime=lambda conn, host, run_as: self.supervisor,
            supervisor=lambda host: self.supervisor,
            stop_runtime=self._stop_runtime,
            reload_nginx=self.nginx.reload,
            find_nginx=lambda host: NGINX,
            probe_socket=self.supervisor.probe_socket,
            probe_uwsgi_socket=self.supervisor.probe_socket,
            probe_url=self.nginx.probe_url,
            open_connections=self._open_connections,
        )

    def _open_connections(self, socket: Path) -> int:
        self.journal.append(f"connections on {socket}")
        return self.connections.get(socket, 0)

    def _stop_runtime(self, host: HostLayout) -> bool:
        self.runtime_stopped = True
        return True
