"""Fleet benchmark: shipyard against pyinfra and Ansible doing the seed's steps, same run.

For each fleet size, every tool gets fresh namespace hosts of its own (tests/fleet/netns.py:
one sshd per host, and a tmpfs of its own at its base directory: see own_filesystems),
all three fleets up at once so that the runs interleave and machine noise
hits every tool: a cold deploy to the fresh hosts, then warm redeploys after a one-line change
to flaskr/views.py, round-robin. Each clock stops when every host serves the new text.

Measured per run: wall time; this machine's CPU (user + system of the tool and everything it
starts, detached ssh masters and the wheel server included: a cpuacct cgroup of its own, with
getrusage(RUSAGE_CHILDREN) alongside); each host's CPU (a cpuacct cgroup around its sshd, so
every process started over SSH there counts). Writes its section of BENCHMARKS.md, between
the fleet markers, and the raw samples to bench/.cache/fleet-results.json.

Usage (root): .venv/bin/python bench/fleet_compare.py [--hosts 1,4,16] [--warm 3] [--quick]
    [--shared-disk]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import sections

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask-factory"
FLEET_DIR = ROOT / "bench" / "fleet"
TOOLS_VENV = ROOT / "bench" / ".venv-tools"
TOOLS_REQUIREMENTS = FLEET_DIR / "requirements-tools.txt"
CACHE = ROOT / "bench" / ".cache"
SHIPYARD = str(ROOT / ".venv" / "bin" / "shipyard")
CGROUPS = Path("/sys/fs/cgroup/cpuacct")
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
TOOL_NAMES = ("shipyard", "pyinfra", "ansible")
SECRET = "bench-secret"
WHEEL_PORT = 8765
SETTLE = 0.5  # seconds after a run before CPU is read: booting workers finish counting
SERVE_TIMEOUT = 120.0
TOOL_TIMEOUT = 1800.0
# What sshd's bash sources on the hosts instead of this machine's /root/.bashrc, and pip
# configs hidden from them (see plain_shells): a fresh Debian root has neither.
PIP_CONFIGS = ("/etc/pip.conf", "/root/.config/pip/pip.conf", "/root/.pip/pip.conf")
PLAIN_BASHRC = "# bench/fleet_compare.py: a fresh host's root .bashrc (comments only)\n"

sys.path.insert(0, str(ROOT / "tests" / "fleet"))
from netns import Fleet  # noqa: E402

# --- measuring -------------------------------------------------------------------------


class CPUGroup:
    """A cgroup v1 cpuacct group: the CPU of every process in it, wherever it forked from."""

    def __init__(self, name: str, pid: int | None = None) -> None:
        self.path = CGROUPS / name
        self.path.mkdir()
        if pid is not None:
            self.add(pid)

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def add(self, pid: int) -> None:
        self.procs.write_text(str(pid))

    def seconds(self) -> float:
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def pids(self) -> list[int]:
        try:
            return [int(word) for word in self.procs.read_text().split()]
        except OSError:
            return []

    def wrap(self, argv: list[str]) -> list[str]:
        """argv, run so that its process (and all it starts) is in this group from exec on."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.procs), *argv]

    def close(self) -> None:
        """End what is left in the group (only processes this benchmark started), remove it."""
        if not self.path.exists():
            return
        kill_all(self.pids)
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)
        print(f"warning: could not remove {self.path}", file=sys.stderr)


def kill_all(pids: Callable[[], list[int]], grace: float = 3.0) -> None:
    """SIGTERM what `pids` lists, then SIGKILL what is still listed after `grace` seconds."""
    deadline = time.monotonic() + grace
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        while pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not pids():
            return
        deadline = time.monotonic() + grace


@dataclass
class Sample:
    wall: float
    here: float  # CPU seconds on this machine: the tool's cgroup
    here_rusage: float  # the same from getrusage(RUSAGE_CHILDREN): only what the tool reaped
    hosts: list[float]  # CPU seconds per host
    sent: int | None = None  # shipyard: bytes sent, all hosts together

    @property
    def per_host(self) -> float:
        return statistics.mean(self.hosts)


@dataclass
class Result:
    tool: str
    n: int
    cold: Sample | None = None
    provision: Sample | None = None  # shipyard: cold = provision + deploy
    deploy: Sample | None = None
    warm: list[Sample] = field(default_factory=list)
    artifact: dict[str, int] = field(default_factory=dict)  # shipyard: its files' sizes
    log: str = ""  # the last warm run's output (stage timings)

    def warm_median(self, pick: Callable[[Sample], float]) -> float:
        return statistics.median(pick(s) for s in self.warm) if self.warm else float("nan")


class ToolFailed(RuntimeError):
    pass


# --- the hosts -------------------------------------------------------------------------


class Testbed:
    """A fleet of n fresh hosts with a CPU group per host (around its sshd) and one for the
    tool on this machine. close() ends everything in them, then the fleet, then the groups."""

    def __init__(self, n: int, own_disks: bool = True) -> None:
        self.fleet = Fleet(web=n, lb=False)
        self.here: CPUGroup | None = None
        self.hosts: list[CPUGroup] = []
        try:
            plain_shells(self.fleet)
            if own_disks:
                own_filesystems(self.fleet)
            self.here = CPUGroup(f"{self.fleet.prefix}-here")
            for host in self.fleet.web:
                assert host.sshd_pid is not None
                self.hosts.append(CPUGroup(f"{self.fleet.prefix}-{host.name}", host.sshd_pid))
        except BaseException:
            self.close()
            raise

    def host_seconds(self) -> list[float]:
        return [group.seconds() for group in self.hosts]

    def close(self) -> None:
        if self.here is not None:
            self.here.close()  # ssh masters, the wheel server: before their hosts go
        self.fleet.close()
        for group in self.hosts:
            group.close()


def plain_shells(fleet: Fleet) -> None:
    """Hide this machine's root dotfiles from each host: a plain /root/.bashrc, no pip.conf.

    The hosts share this machine's filesystem. Its /root/.bashrc runs `pyenv init` and
    `pyenv rehash`, which every SSH command then runs too, through bash: about 0.1 s of CPU
    each, and seconds of waiting when many hosts queue on pyenv's rehash lock, a cost by
    number of commands that no real host has. Its pip.conf points pip at local wheel
    directories and indexes that hosts must not see. netns.py starts each sshd in a mount
    namespace of its own (`ip netns exec`), so bind mounts there change only that host, and
    go with it.
    """
    rc = fleet.root / "plain-bashrc"
    rc.write_text(PLAIN_BASHRC)
    masks = [(rc, Path("/root/.bashrc"))]
    empty = fleet.root / "empty"
    empty.write_text("")
    masks += [(empty, Path(conf)) for conf in PIP_CONFIGS if Path(conf).is_file()]
    for host in fleet.web:
        for source, target in masks:
            subprocess.run(
                ["nsenter", "-t", str(host.sshd_pid), "-m",
                 "mount", "--bind", str(source), str(target)],
                check=True,
                capture_output=True,
                timeout=30,
            )  # fmt: skip
        probe = fleet.ssh(host, "head -1 ~/.bashrc; cat " + " ".join(PIP_CONFIGS) + " 2>/dev/null")
        if probe.stdout.strip() != PLAIN_BASHRC.strip():
            raise RuntimeError(f"{host.name}: the plain dotfiles are not in place: {probe}")


def own_filesystems(fleet: Fleet) -> None:
    """Give each host a filesystem of its own at its base directory, as real hosts have their
    own disks: a tmpfs, mounted in the host's own mount namespace.

    The hosts share this machine's ext4, and on one filesystem, files written by several hosts
    at once cost many times their CPU: one host unpacking a 579-file tar spends 0.05 s of system
    CPU, each of 4 doing it at once 0.3 s. An ext4 image per host (loop-mounted) removes that,
    but all of them still write back through this machine's one disk, in kernel threads that
    no host is charged for; a tmpfs has no writeback at all. Every tool writes its venvs,
    releases and logs under the host's base directory.
    """
    for host in fleet.web:
        where = host.base_dir
        subprocess.run(
            ["nsenter", "-t", str(host.sshd_pid), "-m",
             "mount", "-t", "tmpfs", "-o", "size=2g,mode=755", "tmpfs", str(where)],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        probe = fleet.ssh(host, f"stat -f -c %T {where}")
        if probe.stdout.strip() != "tmpfs":
            raise RuntimeError(f"{host.name}: its own filesystem is not in place: {probe}")


def version_text(address: str) -> str | None:
    try:
        conn = http.client.HTTPConnection(address, 80, timeout=3)
        try:
            conn.request("GET", "/version")
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            return body if response.status == 200 else None
        finally:
            conn.close()
    except OSError:
        return None


def wait_serving(fleet: Fleet, text: str, timeout: float = SERVE_TIMEOUT) -> None:
    """Until every host's nginx serves `text` (the app's GREETING) at /version."""
    deadline = time.monotonic() + timeout
    pending = list(fleet.web)
    while pending:
        pending = [host for host in pending if version_text(host.address) != text]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(host.name for host in pending)
            raise ToolFailed(f"not serving {text!r} after {timeout:.0f} s: {names}")
        time.sleep(0.02)


# --- the tools -------------------------------------------------------------------------


def set_greeting(project: Path, text: str) -> None:
    views = project / "flaskr" / "views.py"
    source = views.read_text()
    changed = re.sub(r'^GREETING = ".*"$', f'GREETING = "{text}"', source, flags=re.M)
    if changed == source:
        raise RuntimeError(f"GREETING not found or unchanged in {views}")
    views.write_text(changed)


class Tool:
    """One way to deploy the example to a testbed; its processes run in the testbed's group."""

    name: ClassVar[str]

    def __init__(self, bed: Testbed, work: Path) -> None:
        self.bed, self.fleet, self.work = bed, bed.fleet, work
        self.project = work / "app"
        shutil.copytree(
            EXAMPLE,
            self.project,
            ignore=shutil.ignore_patterns("instance", "__pycache__", ".pytest_cache"),
        )
        self.env = {
            **os.environ,
            "HOME": str(work),
            "SHIPYARD_CACHE": str(CACHE / "shipyard"),
            "UV_CACHE_DIR": str(CACHE / "uv"),
        }
        self.last_output = ""

    def run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        assert self.bed.here is not None
        return subprocess.run(
            self.bed.here.wrap(argv),
            cwd=self.project,
            env={**self.env, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
            check=False,
        )

    def deploy(self) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def measure(self, action: Callable[[], subprocess.CompletedProcess[str]], text: str) -> Sample:
        assert self.bed.here is not None
        here, hosts = self.bed.here.seconds(), self.bed.host_seconds()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = action()
        if proc.returncode != 0:
            raise ToolFailed(
                f"{self.name} on {len(self.fleet.web)} host(s): {' '.join(proc.args[4:])} "
                f"exited {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            )
        if text:
            wait_serving(self.fleet, text)
        wall = time.monotonic() - started
        time.sleep(SETTLE)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        rusage = after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime
        sample = Sample(
            wall=wall,
            here=self.bed.here.seconds() - here,
            here_rusage=rusage,
            hosts=[b - a for a, b in zip(hosts, self.bed.host_seconds(), strict=True)],
        )
        if (sent := re.search(r"sent (\d+) bytes", proc.stderr)) is not None:
            sample.sent = int(sent.group(1))
        self.last_output = proc.stdout + proc.stderr
        return sample

    def cold(self, result: Result, text: str) -> None:
        set_greeting(self.project, text)
        result.cold = self.measure(self.deploy, text)

    def warm(self, result: Result, text: str) -> None:
        set_greeting(self.project, text)
        result.warm.append(self.measure(self.deploy, text))
        result.log = self.last_output


class Shipyard(Tool):
    name = "shipyard"

    def __init__(self, bed: Testbed, work: Path) -> None:
        super().__init__(bed, work)
        n = len(self.fleet.web)
        hosts = ", ".join(f'"{host.name}"' for host in self.fleet.web)
        spec = self.project / "shipyard.toml"
        spec.write_text(
            # init-db on every deploy, as the other tools run it (the example runs it once)
            spec.read_text().replace("\nsetup = ", "\nrelease = ")
            + "\n[targets.prod]\n"
            + f"hosts = [{hosts}]\n"
            + f'base_dir = "{self.fleet.root}/{{host}}"\n'
            + f'ssh_config = "{self.fleet.ssh_config}"\n'
            + 'release_on = "each"\n'
            + f"parallel = {min(max(n, 8), 64)}\n"  # hosts worked on at once, as forks
        )

    def run(self, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
        # Without warm start: a warm command runs in a server outside this tool's cgroup,
        # whose CPU would then not be counted here.
        return super().run(argv, **{"SHIPYARD_WARM": "0", **env})

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.run([SHIPYARD, "deploy", "--target", "prod"])

    def cold(self, result: Result, text: str) -> None:
        set_greeting(self.project, text)
        result.provision = self.measure(lambda: self.run([SHIPYARD, "provision", "prod"]), "")
        result.deploy = self.measure(self.deploy, text)
        p, d = result.provision, result.deploy
        result.cold = Sample(
            wall=p.wall + d.wall,
            here=p.here + d.here,
            here_rusage=p.here_rusage + d.here_rusage,
            hosts=[a + b for a, b in zip(p.hosts, d.hosts, strict=True)],
        )

    def warm(self, result: Result, text: str) -> None:
        super().warm(result, text)
        release = re.search(r"release (\S+) is live", self.last_output)
        if release is not None:
            artifact = CACHE / "shipyard" / "artifacts" / release.group(1)
            result.artifact = {
                str(path.relative_to(artifact)): path.stat().st_size
                for path in sorted(artifact.rglob("*"))
                if path.is_file()
            }


class SeedTool(Tool):
    """The seed's steps by a configuration tool: pip installs from a wheelhouse that this
    machine serves on the fleet's bridge (hosts have no index); the app's wheel is built
    inside the clock, with uv in a cached build environment."""

    def __init__(self, bed: Testbed, work: Path, dependencies: Path) -> None:
        super().__init__(bed, work)
        self.wheelhouse = work / "wheelhouse"
        shutil.copytree(dependencies, self.wheelhouse)
        self.wheels_url = f"http://{self.fleet.gateway}:{WHEEL_PORT}"
        assert bed.here is not None
        server = [sys.executable, "-m", "http.server", str(WHEEL_PORT)]
        server += ["--bind", self.fleet.gateway, "--directory", str(self.wheelhouse)]
        self.server = subprocess.Popen(
            bed.here.wrap(server),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_server()
        self.hostvars = {
            host.name: {"work": f"{host.base_dir}/seed", "addr": host.address, "secret": SECRET}
            for host in self.fleet.web
        }

    def _wait_server(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"the wheel server exited ({self.server.returncode})")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.fleet.gateway, WHEEL_PORT), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError("the wheel server did not listen")

    def build_app_wheel(self) -> str:
        built = self.run(
            [str(TOOLS_VENV / "bin" / "uv"), "build", "--wheel", "-q",
             "-o", str(self.wheelhouse), str(self.project)]
        )  # fmt: skip
        if built.returncode != 0:
            raise ToolFailed(f"uv build: {built.stderr[-3000:]}")
        wheels = sorted(self.wheelhouse.glob("flaskr-*.whl"))
        if len(wheels) != 1:
            raise ToolFailed(f"expected one app wheel in {self.wheelhouse}, found {wheels}")
        return wheels[0].name

    def deploy(self) -> subprocess.CompletedProcess[str]:
        wheel = self.build_app_wheel()
        return self.apply(wheel)

    def apply(self, wheel: str) -> subprocess.CompletedProcess[str]:
        raise NotImplementedError

    def close(self) -> None:
        self.server.terminate()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(timeout=10)


class Ansible(SeedTool):
    name = "ansible"

    def __init__(self, bed: Testbed, work: Path, dependencies: Path) -> None:
        super().__init__(bed, work, dependencies)
        n = len(self.fleet.web)
        control = Path(tempfile.mkdtemp(prefix="sya-", dir="/tmp"))  # short: socket paths
        self.control = control
        self.config = work / "ansible.cfg"
        self.config.write_text(
            "[defaults]\n"
            f"forks = {max(n, 5)}\n"
            "host_key_checking = True\n"
            "interpreter_python = /usr/bin/python3\n"
            "gathering = explicit\n"
            f"local_tmp = {work}/ansible-local\n"
            "[ssh_connection]\n"
            "pipelining = True\n"
            f"ssh_args = -F {self.fleet.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
            f"control_path_dir = {control}\n"
        )
        lines = ["[web]"]
        for name, hostvars in self.hostvars.items():
            words = [f"{key}={value}" for key, value in hostvars.items()]
            words.append(f"ansible_remote_tmp={hostvars['work']}/.ansible-tmp")
            lines.append(f"{name} " + " ".join(words))
        lines += ["[web:vars]", "ansible_user=root", f"wheels_url={self.wheels_url}"]
        lines.append(f"wheels_host={self.fleet.gateway}")
        self.inventory = work / "inventory.ini"
        self.inventory.write_text("\n".join(lines) + "\n")

    def apply(self, wheel: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            [str(TOOLS_VENV / "bin" / "ansible-playbook"), "-i", str(self.inventory),
             str(FLEET_DIR / "ansible" / "site.yml"), "-e", f"app_wheel={wheel}"],
            ANSIBLE_CONFIG=str(self.config),
        )  # fmt: skip

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.control, ignore_errors=True)


class Pyinfra(SeedTool):
    name = "pyinfra"

    def __init__(self, bed: Testbed, work: Path, dependencies: Path) -> None:
        super().__init__(bed, work, dependencies)
        hosts = [
            (name, {**hostvars, "wheels_url": self.wheels_url, "wheels_host": self.fleet.gateway})
            for name, hostvars in self.hostvars.items()
        ]
        self.inventory = work / "inventory.py"
        self.inventory.write_text(f"web = {hosts!r}\n")

    def apply(self, wheel: str) -> subprocess.CompletedProcess[str]:
        n = len(self.fleet.web)
        return self.run(
            [str(TOOLS_VENV / "bin" / "pyinfra"), str(self.inventory),
             str(FLEET_DIR / "pyinfra" / "deploy.py"), "-y", "--parallel", str(max(n, 1)),
             "--data", f"ssh_config_file={self.fleet.ssh_config}",
             "--data", f"app_wheel={wheel}"],
        )  # fmt: skip


# --- setup -----------------------------------------------------------------------------


def ensure_tools() -> None:
    """bench/.venv-tools with the pinned versions (remade when the pins change)."""
    stamp = TOOLS_VENV / "requirements-tools.txt"
    wanted = TOOLS_REQUIREMENTS.read_text()
    if stamp.exists() and stamp.read_text() == wanted:
        return
    if not (TOOLS_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS_VENV)], check=True, timeout=300)
    pip = [str(TOOLS_VENV / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "-r", str(TOOLS_REQUIREMENTS)], check=True, timeout=900)
    stamp.write_text(wanted)


def dependency_wheels() -> Path:
    """Wheels of flask, gunicorn and supervisor (and theirs), built once on this machine."""
    wheels = CACHE / "seed-wheels"
    if not any(wheels.glob("gunicorn-*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels),
             "flask", "gunicorn", "supervisor"],
            check=True,
            timeout=900,
        )  # fmt: skip
    return wheels


def rotated(names: tuple[str, ...], k: int) -> list[str]:
    k %= len(names)
    return [*names[k:], *names[:k]]


def bench_size(
    n: int, warm_runs: int, names: tuple[str, ...], nonce: str, own_disks: bool
) -> list[Result]:
    """Cold, then warm rounds, for every tool on fleets of n hosts, interleaved."""
    results = {name: Result(name, n) for name in names}
    with contextlib.ExitStack() as stack:
        tools: dict[str, Tool] = {}
        for name in names:
            # closed in reverse: the tool, then its testbed, then its files
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"syb-{name}-")))
            bed = Testbed(n, own_disks)
            stack.callback(bed.close)
            tool: Tool
            if name == "shipyard":
                tool = Shipyard(bed, work)
            elif name == "pyinfra":
                tool = Pyinfra(bed, work, dependency_wheels())
            else:
                tool = Ansible(bed, work, dependency_wheels())
            stack.callback(tool.close)
            tools[name] = tool
        for name in rotated(names, n):
            print(f"  {name} x {n}: cold …", end="", flush=True)
            tools[name].cold(results[name], f"cold {nonce} {n}")
            print(f" {results[name].cold.wall:.1f} s", flush=True)  # type: ignore[union-attr]
        for i in range(warm_runs):
            for name in rotated(names, i):
                tools[name].warm(results[name], f"warm {nonce} {n}.{i}")
                print(f"  {name} x {n}: warm {results[name].warm[-1].wall:.2f} s", flush=True)
    return [results[name] for name in names]


# --- the report ------------------------------------------------------------------------


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{platform.platform()}; {model}; {os.cpu_count()} cores"


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f} ({b / a:.1f}x faster)" if a <= b else f"{a / b:.2f} (slower)"


def report(results: list[Result], warm_runs: int, took: float, argv: str, own_disks: bool) -> str:
    by = {(r.tool, r.n): r for r in results}
    sizes = sorted({r.n for r in results})
    tools = [t for t in TOOL_NAMES if any(r.tool == t for r in results)]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Fleets over SSH: shipyard, pyinfra and Ansible",
        "",
        f"Run {when} on {machine()}.",
        "",
        f"Command: `{argv}` (as root); the whole run took {took / 60:.0f} min. The hosts are",
        "network namespaces on this machine, each with its own sshd (tests/fleet/netns.py): the",
        "hosts' work and the tool's share the same cores, so read the ratios more than the",
        "absolute times.",
        "",
        "- Each tool deploys `examples/flask-factory` to fresh hosts of its own. All three",
        "  fleets of a size are up at once and the runs alternate (cold, then warm rounds in a",
        "  rotating order), so noise on this shared machine hits every tool.",
        "- pyinfra and Ansible do the seed's steps (`bench/seed_script.sh`): venv, pip install",
        "  of the app, gunicorn and supervisor, supervisor program and nginx site from templates",
        "  (`bench/fleet/templates`), `flask init-db`, supervisord start or `supervisorctl",
        "  restart`, nginx start or reload, each host under its own base dir. Hosts have no",
        "  index: pip installs with `--no-index --find-links` from a wheelhouse this machine",
        "  serves on the fleet's bridge. The app's wheel is built inside the clock with",
        "  `uv build` (cached build env). Ansible: forks ≥ hosts, pipelining, ControlPersist,",
        "  no fact gathering; pyinfra: `--parallel` = hosts. Both read the fleet's ssh_config.",
        "- shipyard runs `provision` then `deploy` (cold) or just `deploy` (warm), with",
        "  `parallel` = hosts, and does more than the seed's steps: the app's test suite before",
        "  the build, and a blue/green switch with health checks (no failed requests).",
        "- Cold: fresh hosts, wheel caches on this machine warm. Warm: a one-line change to",
        f"  `GREETING` in flaskr/views.py, median of {warm_runs} run(s). Every clock stops when",
        "  every host serves the new text through nginx.",
        "- CPU is user + system seconds. *Here*: the tool and all it starts on this machine (a",
        "  cpuacct cgroup of its own, which also counts the detached ssh ControlPersist masters",
        "  and the wheel server that getrusage would miss). *Per host*: everything run over SSH",
        "  on a host (a cpuacct cgroup around its sshd), the app's own start included, averaged",
        "  over the hosts.",
        "- The hosts share this machine's files. Its /root/.bashrc runs `pyenv init`, which costs",
        "  every SSH command ~0.1 s of CPU and, with many hosts at once, seconds of waiting on",
        "  pyenv's rehash lock; its pip.conf points at local wheel dirs. The benchmark hides both",
        "  from the hosts (bind mounts in each sshd's own mount namespace), as on a fresh host.",
        "  nginx and python3-venv are installed already (same files): no tool installs packages.",
        *(
            [
                "- Each host's base dir, where every tool writes its venvs, releases and logs,",
                "  is a filesystem of its own (a tmpfs in the host's mount namespace), as real",
                "  hosts have disks of their own. On one shared ext4, files that many hosts",
                "  write at once cost several times their CPU (a 579-file tar: 0.05 s alone,",
                "  0.3 s each with 4 at once), a cost no real fleet has.",
            ]
            if own_disks
            else [
                "- `--shared-disk`: the hosts' base dirs are on this machine's own ext4, where",
                "  files that many hosts write at once cost several times their CPU.",
            ]
        ),
        "",
        "| hosts | tool | cold | warm | CPU here, cold | CPU here, warm "
        "| CPU per host, cold | CPU per host, warm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        for t in tools:
            r = by.get((t, n))
            if r is None or r.cold is None:
                continue
            cold = f"{r.cold.wall:.1f} s"
            if r.provision is not None and r.deploy is not None:
                cold += f" ({r.provision.wall:.1f} provision + {r.deploy.wall:.1f} deploy)"
            lines.append(
                f"| {n} | {t} | {cold} | {r.warm_median(lambda s: s.wall):.2f} s "
                f"| {r.cold.here:.2f} s | {r.warm_median(lambda s: s.here):.2f} s "
                f"| {r.cold.per_host:.2f} s | {r.warm_median(lambda s: s.per_host):.2f} s |"
            )
    lines += [
        "",
        "shipyard's wall time divided by the other tool's (below 1: shipyard is faster):",
        "",
        "| hosts | cold ÷ pyinfra | cold ÷ Ansible | warm ÷ pyinfra | warm ÷ Ansible |",
        "|---|---|---|---|---|",
    ]
    for n in sizes:
        sy = by.get(("shipyard", n))
        if sy is None or sy.cold is None:
            continue
        cells = []
        for label in ("cold", "warm"):
            for other in ("pyinfra", "ansible"):
                o = by.get((other, n))
                if o is None or o.cold is None:
                    cells.append("n/a")
                elif label == "cold":
                    cells.append(fmt_ratio(sy.cold.wall, o.cold.wall))
                else:
                    cells.append(
                        fmt_ratio(sy.warm_median(lambda s: s.wall), o.warm_median(lambda s: s.wall))
                    )
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines += ["", "Against the goals:", ""]
    lines += goals(by, sizes)
    lines += ["", "Raw samples (wall seconds; CPU here / per host in brackets):", ""]
    for r in results:
        assert r.cold is not None
        cold = f"cold {r.cold.wall:.2f} [{r.cold.here:.2f} / {r.cold.per_host:.2f}]"
        if r.provision is not None and r.deploy is not None:
            cold += (
                f" = provision {r.provision.wall:.2f} [{r.provision.here:.2f} / "
                f"{r.provision.per_host:.2f}] + deploy {r.deploy.wall:.2f} "
                f"[{r.deploy.here:.2f} / {r.deploy.per_host:.2f}]"
            )
        warm = ", ".join(f"{s.wall:.2f} [{s.here:.2f} / {s.per_host:.2f}]" for s in r.warm)
        lines.append(f"- {r.tool}, {r.n} host(s): {cold}; warm {warm}")
    lines.append(END)
    return "\n".join(lines) + "\n"


def goals(by: dict[tuple[str, int], Result], sizes: list[int]) -> list[str]:
    out: list[str] = []
    big = sizes[-1]
    sy, py = by.get(("shipyard", big)), by.get(("pyinfra", big))
    if sy and py and sy.cold and py.cold:
        if big != 16:
            out.append(f"- (the goals are for 16 hosts; this run's largest fleet is {big})")
        for label, a, b in (
            ("cold", sy.cold.wall, py.cold.wall),
            ("warm", sy.warm_median(lambda s: s.wall), py.warm_median(lambda s: s.wall)),
        ):
            out.append(
                f"- {label} at {big} hosts ≤ 1/4 of pyinfra's time: shipyard {a:.1f} s, "
                f"pyinfra {b:.1f} s, ratio {a / b:.2f}: {verdict(a <= b / 4)}"
            )
    cores = os.cpu_count() or 1
    floors = []
    for t in TOOL_NAMES:
        r = by.get((t, big))
        if r is not None and r.warm:
            total = r.warm_median(lambda s: s.here + sum(s.hosts))
            floors.append(
                f"{t} {total / cores:.1f} s (wall {r.warm_median(lambda s: s.wall):.1f} s)"
            )
    if floors:
        out.append(
            f"- why: at {big} hosts the hosts' work and the tool's share this machine's {cores} "
            "cores, so a warm redeploy cannot beat (CPU here + CPU of all hosts) / cores: "
            + ", ".join(floors)
            + ". The wall-time ratio there is close to the CPU ratio."
        )
    if any(("shipyard", n) in by for n in sizes):
        per = {
            n: by[("shipyard", n)].warm_median(lambda s: s.per_host)
            for n in sizes
            if ("shipyard", n) in by
        }
        worst = max(per.values())
        figures = ", ".join(f"{v:.2f} s at {n}" for n, v in per.items())
        out.append(
            f"- host CPU per warm redeploy ≤ 0.5 s per host: {figures}: {verdict(worst <= 0.5)}"
        )
    points = [(n, by[("shipyard", n)]) for n in sizes if ("shipyard", n) in by]
    if len(points) >= 2:
        (n0, r0), (n1, r1) = points[0], points[-1]
        for label, pick in (("warm redeploy", warm_here), ("cold (provision + deploy)", cold_here)):
            slope = (pick(r1) - pick(r0)) / (n1 - n0)
            steps = ", ".join(
                f"{a} → {b}: {(pick(rb) - pick(ra)) / (b - a):.3f} s"
                for (a, ra), (b, rb) in itertools.pairwise(points)
            )
            out.append(
                f"- this machine's CPU per extra host ≤ 0.1 s, {label}: {slope:.3f} s from "
                f"{n0} to {n1} hosts ({steps}): {verdict(slope <= 0.1)}"
            )
    four = by.get(("shipyard", 4))
    if four is not None:
        w = four.warm_median(lambda s: s.wall)
        out.append(f"- warm redeploy to 4 hosts ≤ 3 s: {w:.2f} s: {verdict(w <= 3)}")
    out += bytes_goal([r for (t, _), r in by.items() if t == "shipyard"])
    return out


def warm_here(r: Result) -> float:
    return r.warm_median(lambda s: s.here)


def cold_here(r: Result) -> float:
    return r.cold.here if r.cold is not None else float("nan")


def bytes_goal(shipyard: list[Result]) -> list[str]:
    samples = [(r.n, s.sent) for r in shipyard for s in r.warm if s.sent is not None]
    last = next((r for r in reversed(shipyard) if r.artifact), None)
    if not samples or last is None:
        return ["- bytes for a code-only redeploy: not measured (no 'sent N bytes' seen)"]
    per_host = sorted({sent // n for n, sent in samples})
    sent = (last.warm[-1].sent or 0) // last.n  # the run whose artifact is listed
    wheel = sum(size for name, size in last.artifact.items() if name.endswith(".whl"))
    manifest = last.artifact.get("manifest.json", 0)
    others = {
        name: size
        for name, size in last.artifact.items()
        if not name.endswith(".whl") and name != "manifest.json"
    }
    artifact = sum(last.artifact.values())
    target = wheel + manifest
    extra = ", ".join(f"{name} {size} B" for name, size in others.items())
    lines = [
        f"- bytes for a code-only redeploy = app wheel + manifest, no dependencies: sent "
        f"{per_host[0]} to {per_host[-1]} B per host over the runs (the spec differs by fleet). "
        f"In the last, {sent} B: app wheel {wheel} B + manifest {manifest} B = {target} B; "
        f"the whole artifact is {artifact} B."
    ]
    if sent <= target:
        lines.append(
            f"  No dependency wheel is sent: **met**. The artifact's other files ({extra}) are "
            "unchanged: each host links them from the artifact it has instead of receiving "
            "them: **met** to the letter."
        )
    elif sent <= artifact:
        lines.append(
            f"  No dependency wheel is sent: **met**. Beyond the wheel and the manifest it "
            f"sends the rest of the artifact, unchanged: {extra} "
            f"({sent - target} B): {verdict(False)} to the letter."
        )
    else:
        lines.append(
            f"  {sent - artifact} B more than the artifact, so dependency wheels went: "
            f"{verdict(False)}"
        )
    return lines


def write_section(section: str, begin: str = BEGIN, end: str = END) -> None:
    sections.write_section(BENCHMARKS, begin, end, section)


def dump(results: Iterable[Result]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    raw = [{**asdict(r), "log": r.log[-6000:]} for r in results]
    (CACHE / "fleet-results.json").write_text(json.dumps(raw, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", help="fleet sizes, comma-separated (default 1,4,16)")
    parser.add_argument("--warm", type=int, help="warm redeploys per tool and size (default 3)")
    parser.add_argument("--quick", action="store_true", help="1 and 4 hosts, 1 warm run")
    parser.add_argument("--tools", default=",".join(TOOL_NAMES), help="a subset, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    parser.add_argument(
        "--shared-disk",
        action="store_true",
        help="the hosts' base dirs on this machine's own filesystem (the testbed before "
        "2026-12-01 afternoon), not one filesystem per host",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in (args.hosts or ("1,4" if args.quick else "1,4,16")).split(",")]
    warm_runs = args.warm if args.warm is not None else (1 if args.quick else 3)
    names = tuple(t for t in TOOL_NAMES if t in args.tools.split(","))
    if os.geteuid() != 0:
        sys.exit("fleet_compare.py makes network namespaces and cgroups: run it as root")
    if not names or warm_runs < 1 or any(n < 1 or n > 80 for n in sizes):
        sys.exit("need at least one tool, one warm run, and 1 to 80 hosts per fleet")
    # A SIGTERM (e.g. from `timeout`) unwinds like Ctrl-C: fleets, groups and servers go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ensure_tools()
    dependency_wheels()
    nonce = os.urandom(3).hex()  # new text each run: no artifact or test result is reused
    started = time.monotonic()
    results: list[Result] = []
    for n in sizes:
        print(f"{n} host(s):", flush=True)
        results += bench_size(n, warm_runs, names, nonce, not args.shared_disk)
        dump(results)
    took = time.monotonic() - started
    argv = " ".join([".venv/bin/python bench/fleet_compare.py", *sys.argv[1:]])
    section = report(results, warm_runs, took, argv, not args.shared_disk)
    if not args.no_write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    main()
