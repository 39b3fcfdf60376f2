"""Fleet benchmark: shipyard against Ansible and pyinfra doing the seed's steps, same run.

Each tool gets fresh namespace hosts (tests/fleet/netns.py: one sshd per host) for a cold
deploy, then warm redeploys after a one-line change. The clock stops when every host serves
the new content. Measured: wall time, this machine's CPU (the tool and its children), and
each host's CPU (every process started over SSH on it, through a cpuacct cgroup around its
sshd). Writes its section of BENCHMARKS.md.
Usage: .venv/bin/python bench/fleet_compare.py [--hosts 1,4,16] [--warm 3]
"""

from __future__ import annotations

import argparse
import http.client
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask-factory"
FLEET_DIR = ROOT / "bench" / "fleet"
TOOLS = ROOT / "bench" / ".venv-tools"
CACHE = ROOT / "bench" / ".cache"
SHIPYARD = str(ROOT / ".venv" / "bin" / "shipyard")
SECRET = "bench-secret"
CGROUPS = Path("/sys/fs/cgroup/cpuacct")
BEGIN, END = "<!-- fleet:begin -->", "<!-- fleet:end -->"
TOOL_NAMES = ("shipyard", "pyinfra", "ansible")

sys.path.insert(0, str(ROOT / "tests" / "fleet"))
from netns import Fleet  # noqa: E402


@dataclass
class Sample:
    wall: float
    local_cpu: float
    host_cpu: list[float]
    sent: int | None = None


@dataclass
class Result:
    tool: str
    hosts: int
    cold: Sample | None = None
    provision: Sample | None = None
    warm: list[Sample] = field(default_factory=list)


class HostCPU:
    """A cpuacct cgroup per host around its sshd: whatever runs over SSH there is counted."""

    def __init__(self, fleet: Fleet) -> None:
        self.groups: list[Path] = []
        for host in fleet.web:
            group = CGROUPS / f"{fleet.prefix}-{host.name}"
            group.mkdir()
            (group / "cgroup.procs").write_text(str(host.sshd_pid))
            self.groups.append(group)

    def read(self) -> list[float]:
        return [int((g / "cpuacct.usage").read_text()) / 1e9 for g in self.groups]

    def close(self) -> None:
        for group in self.groups:
            for _ in range(50):  # a group goes once its processes are gone
                try:
                    group.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


def ensure_tools() -> None:
    if not (TOOLS / "bin" / "ansible-playbook").exists():
        subprocess.run([sys.executable, "-m", "venv", str(TOOLS)], check=True)
        subprocess.run(
            [
                str(TOOLS / "bin" / "pip"),
                "install",
                "-q",
                "-r",
                str(FLEET_DIR / "requirements-tools.txt"),
            ],
            check=True,
        )


def dependency_wheels() -> Path:
    """Flask, gunicorn and supervisor as wheels, for the tools that copy a wheelhouse."""
    wheels = CACHE / "seed-wheels"
    if not any(wheels.glob("gunicorn-*.whl")):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "-w",
                str(wheels),
                "flask",
                "gunicorn",
                "supervisor",
            ],
            check=True,
        )
    return wheels


def set_greeting(project: Path, text: str) -> None:
    views = project / "flaskr" / "views.py"
    views.write_text(
        re.sub(r'^GREETING = ".*"$', f'GREETING = "{text}"', views.read_text(), flags=re.M)
    )


def serving(address: str, text: str) -> bool:
    try:
        conn = http.client.HTTPConnection(address, 80, timeout=2)
        conn.request("GET", "/")
        body = conn.getresponse().read().decode(errors="replace")
        conn.close()
    except OSError:
        return False
    return f'id="greeting">{text}<' in body


def wait_serving(fleet: Fleet, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    pending = list(fleet.web)
    while pending and time.monotonic() < deadline:
        pending = [h for h in pending if not serving(h.address, text)]
        if pending:
            time.sleep(0.02)
    if pending:
        raise RuntimeError(f"not serving {text!r}: {', '.join(h.name for h in pending)}")


def measure(
    run: Callable[[], subprocess.CompletedProcess[str]], cpu: HostCPU, fleet: Fleet, text: str
) -> tuple[Sample, str]:
    before_local = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_hosts = cpu.read()
    started = time.monotonic()
    proc = run()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{proc.args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    wait_serving(fleet, text)
    wall = time.monotonic() - started
    time.sleep(0.3)  # let processes the deploy started settle into their cgroup totals
    after_local = resource.getrusage(resource.RUSAGE_CHILDREN)
    local = (after_local.ru_utime + after_local.ru_stime) - (
        before_local.ru_utime + before_local.ru_stime
    )
    hosts = [b - a for a, b in zip(before_hosts, cpu.read(), strict=True)]
    return Sample(wall, local, hosts), proc.stderr


class Tool:
    """One way to deploy the example to a fleet: prepare, then deploy (cold or warm)."""

    def __init__(self, name: str, fleet: Fleet, work: Path) -> None:
        self.name, self.fleet, self.work = name, fleet, work
        self.project = work / "app"
        shutil.copytree(
            EXAMPLE,
            self.project,
            ignore=shutil.ignore_patterns("instance", "__pycache__", ".pytest_cache"),
        )
        self.env = {**os.environ, "HOME": str(work), "SHIPYARD_CACHE": str(CACHE / "shipyard")}
        self.wheelhouse = work / "wheelhouse"

    def run(self, argv: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=self.project,
            env={**self.env, **extra},
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )

    def build_app_wheel(self) -> str:
        """The tools that copy wheels get the app's wheel built here, inside the clock."""
        for old in self.wheelhouse.glob("flaskr-*.whl"):
            old.unlink()
        built = self.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(self.wheelhouse),
                str(self.project),
            ]
        )
        if built.returncode != 0:
            raise RuntimeError(built.stderr)
        return next(self.wheelhouse.glob("flaskr-*.whl")).name

    def host_vars(self) -> dict[str, dict[str, str]]:
        return {
            h.name: {"work": f"{h.base_dir}/seed", "addr": h.address, "secret": SECRET}
            for h in self.fleet.web
        }


class Shipyard(Tool):
    def prepare(self) -> None:
        hosts = ", ".join(f'"{h.name}"' for h in self.fleet.web)
        spec = self.project / "shipyard.toml"
        spec.write_text(
            spec.read_text()
            + f'\n[targets.prod]\nhosts = [{hosts}]\nbase_dir = "{self.fleet.root}/{{host}}"\n'
            f'ssh_config = "{self.fleet.ssh_config}"\nrelease_on = "each"\nparallel = 64\n'
        )

    def provision(self) -> subprocess.CompletedProcess[str]:
        return self.run([SHIPYARD, "provision", "prod"])

    def deploy(self) -> subprocess.CompletedProcess[str]:
        return self.run([SHIPYARD, "deploy", "--target", "prod"])


class Ansible(Tool):
    def prepare(self) -> None:
        shutil.copytree(dependency_wheels(), self.wheelhouse)
        control = Path(tempfile.mkdtemp(prefix="sya-", dir="/tmp"))
        (self.work / "ansible.cfg").write_text(
            "[defaults]\n"
            f"forks = {max(len(self.fleet.web), 5)}\n"
            "host_key_checking = True\n"
            "interpreter_python = /usr/bin/python3\n"
            "gathering = explicit\n"
            f"local_tmp = {self.work}/ansible-tmp\n"
            "[ssh_connection]\n"
            "pipelining = True\n"
            f"ssh_args = -F {self.fleet.ssh_config} -o ControlMaster=auto -o ControlPersist=60s\n"
            f"control_path_dir = {control}\n"
        )
        lines = ["[web]"]
        for name, hv in self.host_vars().items():
            lines.append(f"{name} " + " ".join(f"{k}={v}" for k, v in hv.items()))
        lines += ["[web:vars]", "ansible_user=root", f"wheelhouse={self.wheelhouse}"]
        (self.work / "inventory.ini").write_text("\n".join(lines) + "\n")

    def deploy(self) -> subprocess.CompletedProcess[str]:
        wheel = self.build_app_wheel()
        return self.run(
            [str(TOOLS / "bin" / "ansible-playbook"), "-i", str(self.work / "inventory.ini"),
             str(FLEET_DIR / "ansible" / "site.yml"), "-e", f"app_wheel={wheel}"],
            ANSIBLE_CONFIG=str(self.work / "ansible.cfg"),
        )  # fmt: skip


class Pyinfra(Tool):
    def prepare(self) -> None:
        shutil.copytree(dependency_wheels(), self.wheelhouse)
        hosts = [
            (name, {**hv, "wheelhouse": str(self.wheelhouse)})
            for name, hv in self.host_vars().items()
        ]
        (self.work / "inventory.py").write_text(f"web = {hosts!r}\n")

    def deploy(self) -> subprocess.CompletedProcess[str]:
        wheel = self.build_app_wheel()
        f = self.fleet
        return self.run(
            [str(TOOLS / "bin" / "pyinfra"), str(self.work / "inventory.py"),
             str(FLEET_DIR / "pyinfra" / "deploy.py"), "-y", "--parallel", str(max(len(f.web), 1)),
             "--data", f"ssh_config_file={f.ssh_config}",
             "--data", f"ssh_known_hosts_file={f.known_hosts}",
             "--data", "ssh_strict_host_key_checking=yes",
             "--data", f"ssh_key={f.client_key}",
             "--data", "ssh_user=root",
             "--data", f"app_wheel={wheel}"],
        )  # fmt: skip


@contextmanager
def fleet_of(n: int) -> Iterator[tuple[Fleet, HostCPU]]:
    with Fleet(web=n, lb=False) as fleet:
        cpu = HostCPU(fleet)
        try:
            yield fleet, cpu
        finally:
            fleet.close()
            cpu.close()


def bench_tool(name: str, n: int, warm_runs: int) -> Result:
    result = Result(name, n)
    with fleet_of(n) as (fleet, cpu), tempfile.TemporaryDirectory(prefix="syb-") as tmp:
        tool: Shipyard | Ansible | Pyinfra = {
            "shipyard": Shipyard,
            "ansible": Ansible,
            "pyinfra": Pyinfra,
        }[name](name, fleet, Path(tmp))
        tool.prepare()
        if isinstance(tool, Shipyard):
            prov, _ = measure_provision(tool, cpu)
            result.provision = prov
            cold, err = measure(tool.deploy, cpu, fleet, "Hello from flaskr")
            cold.wall += prov.wall
            cold.local_cpu += prov.local_cpu
            cold.host_cpu = [a + b for a, b in zip(cold.host_cpu, prov.host_cpu, strict=True)]
        else:
            cold, err = measure(tool.deploy, cpu, fleet, "Hello from flaskr")
        result.cold = cold
        for i in range(warm_runs):
            text = f"warm {i}"
            set_greeting(tool.project, text)
            sample, err = measure(tool.deploy, cpu, fleet, text)
            if (sent := re.search(r"sent (\d+) bytes", err)) is not None:
                sample.sent = int(sent.group(1))
            result.warm.append(sample)
        warm = ", ".join(f"{s.wall:.2f}" for s in result.warm)
        print(f"  {name} x{n}: cold {result.cold.wall:.1f}s, warm {warm}", flush=True)
    return result


def measure_provision(tool: Shipyard, cpu: HostCPU) -> tuple[Sample, str]:
    before_local = resource.getrusage(resource.RUSAGE_CHILDREN)
    before_hosts = cpu.read()
    started = time.monotonic()
    proc = tool.provision()
    if proc.returncode != 0:
        raise RuntimeError(f"provision: {proc.stderr[-3000:]}")
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    local = (after.ru_utime + after.ru_stime) - (before_local.ru_utime + before_local.ru_stime)
    return Sample(
        wall, local, [b - a for a, b in zip(before_hosts, cpu.read(), strict=True)]
    ), proc.stderr


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(results: list[Result], warm_runs: int) -> str:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN,
        "## Fleets over SSH: shipyard, pyinfra and Ansible",
        "",
        f"Run {when} on {platform.platform()}; {cpu_model}; {os.cpu_count()} cores. Produced by",
        "`.venv/bin/python bench/fleet_compare.py`. Every tool deploys `examples/flask-factory` to",
        "fresh namespace hosts (one sshd each, this machine's cores shared by all), doing the",
        "seed's steps: venv, offline install of the wheels, supervisor program, nginx site,",
        "`flask init-db` on every host, (re)start, reload. Ansible (forks ≥ hosts, pipelining,",
        "ControlPersist, no fact gathering) and pyinfra (parallel = hosts) copy a wheelhouse and",
        "pip-install from it; the app's wheel is built inside the clock. shipyard also runs the",
        "app's test suite (the others do not) and switches blue/green. Cold = fresh hosts (for",
        f"shipyard: `provision` + `deploy`); warm = a one-line change, median of {warm_runs}.",
        "Wall time ends when every host serves the new page. CPU is user + system:",
        "'here' is the tool and its children on this machine, 'per host' is everything run over",
        "SSH on a host (cpuacct cgroup around its sshd), averaged over hosts.",
        "",
        "| hosts | tool | cold | warm | CPU here, warm | CPU per host, warm | CPU per host, cold |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(r.tool, r.hosts): r for r in results}
    for r in results:
        assert r.cold is not None
        warm = median([s.wall for s in r.warm])
        here = median([s.local_cpu for s in r.warm])
        per_host = median([statistics.mean(s.host_cpu) for s in r.warm])
        cold_host = statistics.mean(r.cold.host_cpu)
        lines.append(
            f"| {r.hosts} | {r.tool} | {r.cold.wall:.1f} s | {warm:.2f} s | {here:.2f} s | "
            f"{per_host:.2f} s | {cold_host:.2f} s |"
        )
    lines += ["", "Against the goals:", ""]
    sizes = sorted({r.hosts for r in results})
    biggest = sizes[-1]
    sy, py = by.get(("shipyard", biggest)), by.get(("pyinfra", biggest))
    an = by.get(("ansible", biggest))
    if sy and py and sy.cold and py.cold:
        for label in ("cold", "warm"):
            a, b = (
                (r.cold.wall if label == "cold" and r.cold else median([x.wall for x in r.warm]))
                for r in (sy, py)
            )
            verdict = "met" if a <= b / 4 else "not met"
            line = (
                f"- {label} at {biggest} hosts: shipyard {a:.1f} s, pyinfra {b:.1f} s "
                f"(ratio {a / b:.2f}; goal ≤ 0.25: {verdict})"
            )
            if an and an.cold:
                other = an.cold.wall if label == "cold" else median([x.wall for x in an.warm])
                line += f"; Ansible {other:.1f} s"
            lines.append(line)
    if sy:
        per_host = median([statistics.mean(s.host_cpu) for s in sy.warm])
        lines.append(
            f"- host CPU per warm redeploy: shipyard {per_host:.2f} s per host at {biggest} hosts "
            f"(goal ≤ 0.5 s: {'met' if per_host <= 0.5 else 'not met'})"
        )
    small, large = by.get(("shipyard", sizes[0])), by.get(("shipyard", biggest))
    if small and large and biggest > sizes[0]:
        slope = (
            median([s.local_cpu for s in large.warm]) - median([s.local_cpu for s in small.warm])
        ) / (biggest - sizes[0])
        lines.append(
            f"- this machine's CPU per extra host (warm, {sizes[0]} → {biggest} hosts): "
            f"{slope:.3f} s (goal ≤ 0.1 s: {'met' if slope <= 0.1 else 'not met'})"
        )
    four = by.get(("shipyard", 4))
    if four:
        w = median([s.wall for s in four.warm])
        lines.append(
            f"- warm redeploy to 4 hosts: {w:.2f} s (goal ≤ 3 s: {'met' if w <= 3 else 'not met'})"
        )
    sent = [s.sent for r in results if r.tool == "shipyard" for s in r.warm if s.sent is not None]
    if sent:
        per_host_bytes = [
            s.sent / r.hosts for r in results if r.tool == "shipyard" for s in r.warm if s.sent
        ]
        lines.append(
            f"- bytes sent per host for a code-only redeploy: {int(median(per_host_bytes))} "
            "(the app wheel, the manifest, the lock and the static files; no dependency wheels)"
        )
    lines += ["", "Raw warm samples (wall seconds):", ""]
    for r in results:
        samples = ", ".join(f"{s.wall:.2f}" for s in r.warm)
        lines.append(f"- {r.tool}, {r.hosts} host(s): {samples}")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(section: str) -> None:
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", default="1,4,16", help="comma-separated fleet sizes")
    parser.add_argument("--warm", type=int, default=3, help="warm redeploys per tool and size")
    parser.add_argument("--tools", default=",".join(TOOL_NAMES))
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("fleet_compare.py makes network namespaces: run it as root")
    ensure_tools()
    CACHE.mkdir(parents=True, exist_ok=True)
    results = []
    for n in (int(x) for x in args.hosts.split(",")):
        for name in args.tools.split(","):
            print(f"{name} on {n} host(s)…", flush=True)
            results.append(bench_tool(name, n, args.warm))
    section = report(results, args.warm)
    write_section(section)
    print(section)


if __name__ == "__main__":
    main()
