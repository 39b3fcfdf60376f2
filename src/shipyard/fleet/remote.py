"""Remote hosts from the deploying machine's side: connections, facts, the agent session.

A host runs shipyard's agent (agent.py) from a runtime under its base directory: a venv with
shipyard's dependencies and supervisord, plus shipyard's own package synced from here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any, Protocol, TypeVar

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pydantic import ValidationError

import shipyard
from shipyard.build.deps import Pin
from shipyard.build.platforms import Platform
from shipyard.build.runtime_image import RUNTIME_FORMAT
from shipyard.errors import HostError, ShipyardError
from shipyard.fleet.ssh import SSH_FAILED, SSHConnection, SSHOptions, unreachable
from shipyard.host import resident, wire
from shipyard.host.protocol import (
    PROTOCOL_VERSION,
    ErrorDetail,
    ErrorReply,
    HelloReply,
    Reply,
    Request,
)
from shipyard.host.steps import Command
from shipyard.spec.address import SSHAddress
from shipyard.spec.model import TargetSpec

DEFAULT_BASE = "/srv/shipyard"
DEFAULT_LISTEN = "0.0.0.0:80"
RUNTIME_MARK = ".shipyard-runtime"
INTERPRETER_MARK = ".shipyard-interpreter"
LIB_MARK = ".shipyard-lib"
NOT_READY = 3  # the agent's exit code when its code is not the deploying machine's
R = TypeVar("R", bound=Reply)
HOST_PACKAGES = ("pydantic", "jinja2", "supervisor", "packaging", "installer")

FACTS_SCRIPT = r"""
base=$1; app_user=$2
echo "os=$(. /etc/os-release 2>/dev/null; echo "${ID:-unknown} ${VERSION_ID:-}")"
# the system's python3 first: a user's pyenv or similar may sit in a home others cannot enter
python=/usr/bin/python3; [ -x "$python" ] || python=$(command -v python3 2>/dev/null)
# one interpreter start for its version, platform, libc, and whether it can make venvs
"$python" - 2>/dev/null <<'PY'
import os, sys, sysconfig
from importlib.util import find_spec
print("python=%d.%d.%d" % sys.version_info[:3], sysconfig.get_platform())
try:
    libc = os.confstr("CS_GNU_LIBC_VERSION") or ""  # "glibc 2.36"
except (ValueError, OSError):
    libc = ""
if not libc:
    import platform  # it reads the interpreter's binary to find out
    libc = "%s %s" % platform.libc_ver()
print("libc=" + libc)
# found, not imported (importing ensurepip is slow): Debian splits it out
if find_spec("venv") and find_spec("ensurepip"):
    print("venv=yes")
PY
echo "python_path=$python"
n=$(command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; })
echo "nginx=$n"
echo "login=$(id -un)"
echo "app_user=$(id -u "$app_user" >/dev/null 2>&1 && echo yes)"
echo "systemd=$([ -d /run/systemd/system ] && echo yes)"
echo "apt=$(command -v apt-get 2>/dev/null)"
echo "certbot=$(command -v certbot 2>/dev/null)"
echo "runtime=$(cat "$base/.shipyard/venv/.shipyard-runtime" 2>/dev/null)"
echo "lib=$(cat "$base/.shipyard/lib/.shipyard-lib" 2>/dev/null)"
d=$base; while [ ! -d "$d" ]; do d=$(dirname "$d"); done
echo "disk_free_kb=$(df -Pk "$d" | awk 'NR==2 {print $4}')"
"""


@dataclass(frozen=True)
class Facts:
    """What a host is and has, read in one round trip."""

    os: str
    python: str  # "3.11.2", empty when there is no python3
    platform: str  # "linux-x86_64"
    python_path: str
    venv: bool
    nginx: str
    login: str
    app_user: bool
    systemd: bool
    apt: bool
    runtime: str
    lib: str
    disk_free_kb: int
    libc: str = ""  # "glibc 2.36"
    certbot: str = ""  # its path; ACME's client, on an lb whose target uses tls.mode = 'acme'

    @property
    def python_minor(self) -> str:
        return ".".join(self.python.split(".")[:2])

    @property
    def wheel_platform(self) -> Platform:
        return Platform.parse(self.platform, self.libc)

    @classmethod
    def parse(cls, text: str) -> Facts:
        raw = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        python, _, platform = raw.get("python", "").partition(" ")
        free = raw.get("disk_free_kb", "")
        return cls(
            os=raw.get("os", "unknown").strip(),
            python=python,
            platform=platform,
            python_path=raw.get("python_path", "") if python else "",
            venv=raw.get("venv") == "yes",
            nginx=raw.get("nginx", ""),
            login=raw.get("login", ""),
            app_user=raw.get("app_user") == "yes",
            systemd=raw.get("systemd") == "yes",
            apt=bool(raw.get("apt")),
            runtime=raw.get("runtime", ""),
            lib=raw.get("lib", ""),
            disk_free_kb=int(free) if free.isdigit() else 0,
            certbot=raw.get("certbot", ""),
            libc=raw.get("libc", "").strip(),
        )


@dataclass
class RemoteHost:
    """One host of a target: its name as written in the spec, its role and connection."""

    name: str
    role: str  # "web" | "lb"
    conn: SSHConnection
    base: PurePosixPath
    listen: str
    app_user: str = ""
    nginx: str = "managed"
    agent_linger: float = resident.LINGER
    facts: Facts | None = None
    process_manager: str = "supervisor"

    @property
    def runtime(self) -> PurePosixPath:
        return self.base / ".shipyard"

    @property
    def python(self) -> str:
        return str(self.runtime / "venv" / "bin" / "python")

    def agent_command(self, *args: str) -> Command:
        return Command(
            (self.python, "-m", "shipyard.host.agent", *args),
            env={"PYTHONPATH": str(self.runtime / "lib")},
            sudo=True,
        )

    def backend_address(self) -> str:
        """host:port the load balancer reaches this web host's nginx at."""
        _, _, port = self.listen.rpartition(":")
        return f"{ssh_hostname(self.conn)}:{port}"

    def read_facts(self, app_user: str) -> Facts:
        result = self.conn.run_input(
            Command(("sh", "-s", "--", str(self.base), app_user), sudo=True, timeout=60),
            FACTS_SCRIPT.encode(),
        )
        if not result.ok:
            raise HostError(
                self.name,
                f"cannot read the host's facts (exit {result.exit_code}):\n{result.output_tail()}",
                hint="The login user needs a POSIX shell, and passwordless sudo when not root.",
            )
        self.facts = Facts.parse(result.stdout)
        return self.facts


def host_base(target: TargetSpec, name: str) -> PurePosixPath:
    """The host's base directory; `{host}` in base_dir is the host's name (hosts that share
    a filesystem, such as containers or test hosts, each get their own)."""
    safe = SSHAddress.parse(name).host.replace("/", "_")
    return PurePosixPath((target.base_dir or DEFAULT_BASE).replace("{host}", safe))


def ssh_hostname(conn: SSHConnection) -> str:
    """The address ssh really connects to (after the ssh config's HostName)."""
    return conn.effective_config().get("hostname", conn.address.host)


def target_hosts(target: TargetSpec, control_dir: Path, project: Path) -> list[RemoteHost]:
    """The web hosts, then the lb (if any), each with its own connection."""

    def resolve(path: str) -> Path | None:
        return (project / path).expanduser().absolute() if path else None

    options = SSHOptions(
        config_file=resolve(target.ssh_config),
        identity_file=resolve(target.identity_file),
        trust_new_host_keys=target.trust_new_host_keys,
    )
    listen = target.listen or DEFAULT_LISTEN

    def host(name: str, role: str) -> RemoteHost:
        conn = SSHConnection(SSHAddress.parse(name), options, control_dir)
        base = host_base(target, name)
        return RemoteHost(
            name,
            role,
            conn,
            base,
            listen,
            target.run_user(),
            target.nginx,
            target.agent_linger,
            process_manager=target.process_manager,
        )

    hosts = [host(name, "web") for name in target.hosts]
    if target.lb:
        hosts.append(host(target.lb, "lb"))
    return hosts


# --- what the runtime is made of ---------------------------------------------------------------


@cache
def runtime_pins() -> tuple[Pin, ...]:
    """What the host agent imports, closed over, at the versions installed here.

    Not all of shipyard's dependencies: the CLI's (click, rich and what rich pulls in) and the
    builder's (build, pyproject-hooks) stay on the deploying machine.
    """
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    seen: dict[str, Pin] = {}
    todo = list(HOST_PACKAGES)
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ShipyardError(
                f"shipyard's dependency {name} is not installed here; cannot build the "
                "host runtime.",
                hint="Reinstall shipyard (pip install shipyard) and retry.",
            ) from None
        key = canonicalize_name(name)
        seen.setdefault(key, Pin(str(key), dist.version))
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({**env, "extra": ""}):
                continue
            key = canonicalize_name(req.name)
            if key not in seen:
                found = metadata.distribution(req.name)
                seen[key] = Pin(str(key), found.version)
                todo.append(req.name)
    return tuple(sorted(seen.values(), key=lambda pin: pin.name))


def runtime_id(python_minor: str, interpreter: str) -> str:
    pins = "\n".join(str(pin) for pin in runtime_pins())
    text = f"{pins}\npython {python_minor} {interpreter}\nformat {RUNTIME_FORMAT}\n"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def package_dir() -> Path:
    return Path(shipyard.__file__).resolve().parent


# What a host runs: its own package and the pure modules it imports. Not the CLI, the build or
# the fleet's side: an edit there leaves the agent's id, and so every host's agent, as it is.
SHIPPED = ("__init__.py", "py.typed", "errors.py", "events.py", "plan.py", "host", "spec")


@cache
def lib_files() -> tuple[tuple[str, Path], ...]:
    root = package_dir()
    files = sorted(
        p
        for name in SHIPPED
        for p in ([root / name] if (root / name).is_file() else (root / name).rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    return tuple((f"shipyard/{p.relative_to(root).as_posix()}", p) for p in files)


@cache
def lib_id() -> str:
    digest = hashlib.sha256()
    for rel, path in lib_files():
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# --- the agent session ------------------------------------------------------------------------


class RemoteError(ShipyardError):
    """An error the agent reported from a host, with the host and the step named."""

    def __init__(self, host: str, op: str, error: ErrorDetail) -> None:
        super().__init__(f"{host} ({op}): {error.message}", hint=error.hint)
        self.host = host
        self.op = op
        self.kind = error.type  # the agent's name for it: "LockHeld", "DeployError", ...
        self.exit_code = error.exit_code or 1  # type: ignore[misc]


class ProtocolMismatch(HostError):
    """The host's agent and this machine do not speak the same protocol (another shipyard
    there): the agent is synced and started again, as for any out-of-date agent."""

    def __init__(self, host: str, op: str, theirs: int | None, detail: str) -> None:
        super().__init__(
            host,
            f"its agent speaks protocol {theirs if theirs is not None else 'unknown'} and this "
            f"machine's shipyard protocol {PROTOCOL_VERSION} ('{op}': {detail})",
            hint="shipyard syncs the host's agent when it meets one of other code; if this "
            "persists, run 'shipyard provision TARGET' and retry.",
        )
        self.theirs = theirs
        self.ours = PROTOCOL_VERSION


class AgentSession(Protocol):
    """What the fleet needs of a session with a host's agent (Agent, or a fake in tests)."""

    def call(self, request: Request[R], files: Iterable[wire.FileEntry] = ()) -> R: ...

    def close(self) -> None: ...


def read_reply(host: str, request: Request[R], raw: dict[str, Any]) -> R:
    """The reply model `raw` is for `request`; RemoteError for the agent's error, and
    ProtocolMismatch for a reply this machine cannot read, or a request the agent could not."""
    op = request.op
    if raw.get("ok") is True:
        body = {key: value for key, value in raw.items() if key != "ok"}
        try:
            reply = request.parse_reply(body)
        except ValidationError as err:
            theirs = body.get("protocol")
            raise ProtocolMismatch(
                host, op, theirs if isinstance(theirs, int) else None, f"its reply: {err_text(err)}"
            ) from None
        if isinstance(reply, HelloReply) and reply.protocol != PROTOCOL_VERSION:
            raise ProtocolMismatch(host, op, reply.protocol, "its hello")
        return reply
    try:
        error = ErrorReply.model_validate(raw).error
    except ValidationError:
        raise ProtocolMismatch(host, op, None, f"an unreadable reply {str(raw)[:200]}") from None
    if error.type in ("ProtocolMismatch", "InvalidRequest"):
        raise ProtocolMismatch(host, op, error.protocol, error.message)
    raise RemoteError(host, op, error)


def err_text(err: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors()[:3])


@dataclass
class Agent:
    """An open session with one host's agent: requests in, replies out, over one ssh channel."""

    host: RemoteHost
    proc: subprocess.Popen[bytes]
    _stderr: list[bytes] = field(default_factory=list)

    @classmethod
    def open(cls, host: RemoteHost) -> Agent:
        """A session with the host's resident agent if one is there, else with a new agent."""
        args: tuple[str, ...] = ("--base", str(host.base), "--listen", host.listen)
        args += ("--app-user", host.app_user, "--nginx", host.nginx, "--expect-lib", lib_id())
        if host.process_manager != "supervisor":
            args += ("--process-manager", host.process_manager)
        full = host.agent_command("session", *args, "--linger", str(host.agent_linger))
        header = resident.session_header(
            str(host.base), host.listen, host.app_user, host.nginx, lib_id(), host.process_manager
        )
        socket_path = str(host.runtime / resident.SOCKET_NAME)
        relay = (host.python, "-I", "-S", "-c", resident.RELAY, socket_path, header)
        proc = host.conn.popen(replace(full, argv=relay + full.argv))
        return cls.over(host, proc)

    @classmethod
    def over(cls, host: RemoteHost, proc: subprocess.Popen[bytes]) -> Agent:
        """A session over a started agent process (its stdin and stdout piped)."""
        agent = cls(host, proc)
        threading.Thread(target=agent._drain_stderr, daemon=True).start()
        return agent

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)
            del self._stderr[:-50]

    def call(self, request: Request[R], files: Iterable[wire.FileEntry] = ()) -> R:
        """Send one request (and its files' payload); its reply, parsed into its model."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        op = request.op
        message = request.model_dump(mode="json", by_alias=True, exclude={"files"})
        try:
            wire.send(self.proc.stdin, message, files)
            raw = wire.receive(self.proc.stdout)
        except (BrokenPipeError, ConnectionError, wire.ProtocolError):
            raw = None
        if raw is None:
            raise self._lost(op)
        return read_reply(self.host.name, request, raw)

    def _lost(self, op: str) -> HostError:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        if self.proc.returncode == SSH_FAILED and op == "hello":  # never got in
            return unreachable(self.host.name, b"".join(self._stderr).decode(errors="replace"))
        said = b"".join(self._stderr).decode(errors="replace").strip().splitlines()[-8:]
        detail = "\n".join(f"  | {line}" for line in said) or "  | (nothing)"
        if op == "commit":  # the agent goes on with the switch without us
            hint = (
                "That host finishes its switch on its own, or undoes it if it fails, so it "
                "serves one release either way (`shipyard status` shows which). Re-run the "
                "command once the host is reachable: hosts already on the new release are "
                "skipped."
            )
        else:
            hint = (
                "On that host, a release that was staged and not switched is stopped again and "
                "the serving one keeps serving. Re-run the command once the host is reachable."
            )
        return HostError(
            self.host.name,
            f"lost the connection during '{op}' (exit {self.proc.returncode}); it said:\n{detail}",
            hint=hint,
        )

    def close(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def runtime_current(hello: HelloReply) -> bool:
    """The runtime the agent runs in is the one provision would install now."""
    minor = ".".join(hello.python.split(".")[:2])
    return hello.runtime == runtime_id(minor, hello.interpreter)


def require_runtime(host: RemoteHost) -> None:
    """A deploy needs a provisioned host; say precisely what is missing and how to fix it."""
    facts = host.facts
    assert facts is not None
    missing = []
    if not facts.python:
        missing.append("python3")
    if not facts.nginx:
        missing.append("nginx")
    if facts.runtime != runtime_id(facts.python_minor, facts.python_path):
        missing.append(
            "shipyard's runtime (supervisord and the agent) is "
            + ("out of date" if facts.runtime else "not installed")
        )
    if missing:
        raise HostError(
            host.name,
            "is not ready: " + "; ".join(missing) + ".",
            hint="Run 'shipyard provision TARGET' (it installs only what is missing).",
        )


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
