"""Where a host's CPU goes in a warm redeploy: shipyard's own work against the app's.

bench/fleet_compare.py measures each host's CPU as one number (a cpuacct group around its
sshd). This splits that number by process, on the same testbed: fresh namespace hosts, a
provision and cold deploy, warm-up redeploys, then one profiled warm redeploy (a one-line
change to flaskr/views.py) per fleet size.

- Processes alive after the deploy: their CPU from /proc, less what they had before it.
- Processes that ended during it (the old app server, the release command, nginx's old workers):
  BSD process accounting (`accton`, Debian's acct), kept when their parent chain leads to a
  host's process. A process that ran before the deploy counts only what it used since.

The parts are grouped into roles and compared with the groups' total, so nothing is left
out unseen. Writes its section of BENCHMARKS.md between the host-cpu markers.

Usage (root): .venv/bin/python bench/host_cpu.py [--hosts 1,16] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fleet_compare import (
    SETTLE,
    SHIPYARD,
    Result,
    Shipyard,
    Testbed,
    machine,
    set_greeting,
    wait_serving,
    write_section,
)

BEGIN, END = "<!-- host-cpu:begin -->", "<!-- host-cpu:end -->"
WARMUPS = 2
TICKS = os.sysconf("SC_CLK_TCK")
ACCT_TICKS = 100  # dump-acct prints CPU in AHZ ticks
# Roles in the order of the report; what is the app's own cost, which every tool pays.
APP_ROLES = ("new app server (master + workers)", "old app server stopping", "release command")
ROLES = (
    *APP_ROLES,
    "agent (resident)",
    "bytecode compile",
    "supervisord",
    "nginx",
    "sshd + session relay",
    "other",
)


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    cpu: float  # seconds, user + system


def live_processes(pids: list[int]) -> dict[int, Proc]:
    found: dict[int, Proc] = {}
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # ended between the listing and the read
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        found[pid] = Proc(pid, int(fields[1]), comm, cmdline.strip(), cpu)
    return found


def ended_processes(pacct: Path) -> dict[int, Proc]:
    """Every process that ended while accounting was on, by pid."""
    out = subprocess.run(["dump-acct", str(pacct)], capture_output=True, text=True, check=True)
    found: dict[int, Proc] = {}
    for line in out.stdout.splitlines():
        fields = [field.strip() for field in line.split("|")]
        cpu = (float(fields[2]) + float(fields[3])) / ACCT_TICKS
        found[int(fields[9])] = Proc(int(fields[9]), int(fields[10]), fields[0], "", cpu)
    return found


def on_hosts(ended: dict[int, Proc], known: set[int]) -> dict[int, Proc]:
    """The ended processes that were hosts' processes or whose parent chain leads to one."""
    memo: dict[int, bool] = {}

    def belongs(pid: int, depth: int = 0) -> bool:
        if pid in known:
            return True
        if pid not in ended or depth > 50:
            return False
        if pid not in memo:
            memo[pid] = belongs(ended[pid].ppid, depth + 1)
        return memo[pid]

    return {pid: proc for pid, proc in ended.items() if belongs(pid)}


def role(proc: Proc, parents: dict[int, Proc], old: set[int]) -> str:
    parent = parents.get(proc.ppid)
    if proc.comm == "gunicorn" or "gunicorn" in proc.cmdline:
        return APP_ROLES[1] if proc.pid in old else APP_ROLES[0]
    if proc.comm == "flask" or (parent is not None and parent.comm == "runuser"):
        return APP_ROLES[2]
    if "shipyard.host.agent" in proc.cmdline:
        return "agent (resident)"
    if proc.comm == "python" and parent is not None and "shipyard.host.agent" in parent.cmdline:
        return "bytecode compile"
    if "supervisord" in proc.cmdline:
        return "supervisord"
    if proc.comm == "nginx":
        return "nginx"
    if proc.comm.startswith(("sshd", "bash", "sh", "python", "sudo")):
        return "sshd + session relay"
    return "other"


@dataclass
class Profile:
    hosts: int
    wall: float
    measured: float  # the cpuacct groups' CPU, per host
    by_role: dict[str, float]  # per host


def profile_size(n: int, nonce: str, phase: str, verbose: bool, own_disks: bool) -> Profile:
    """The profile of one phase: `warm`, or `provision` / `deploy` of a cold run."""
    work = Path(tempfile.mkdtemp(prefix="syb-hostcpu-"))
    bed = Testbed(n, own_disks)
    try:
        tool = Shipyard(bed, work)
        if phase == "provision":
            return measure(bed, lambda: tool.run([SHIPYARD, "provision", "prod"]), verbose)
        cold = f"cold {nonce} {n}"
        if phase == "deploy":
            set_greeting(tool.project, cold)
            tool.run([SHIPYARD, "provision", "prod"])
            return measure(bed, lambda: deployed(tool, bed, cold), verbose)
        result = Result("shipyard", n)
        tool.cold(result, cold)
        for i in range(WARMUPS):
            tool.warm(result, f"warmup {nonce} {n}.{i}")
        text = f"profiled {nonce} {n}"
        set_greeting(tool.project, text)
        return measure(bed, lambda: deployed(tool, bed, text), verbose)
    finally:
        bed.close()
        shutil.rmtree(work, ignore_errors=True)


def deployed(tool: Shipyard, bed: Testbed, text: str) -> subprocess.CompletedProcess[str]:
    """A deploy that counts once every host serves `text`."""
    done = tool.deploy()
    if done.returncode == 0:
        wait_serving(bed.fleet, text)
    return done


def measure(
    bed: Testbed, action: Callable[[], subprocess.CompletedProcess[str]], verbose: bool
) -> Profile:
    def host_pids() -> list[int]:
        return [pid for group in bed.hosts for pid in group.pids()]

    before = live_processes(host_pids())
    totals = bed.host_seconds()
    pacct = Path(tempfile.mkstemp(prefix="syb-pacct-")[1])
    subprocess.run(["accton", str(pacct)], check=True, capture_output=True)
    try:
        started = time.monotonic()
        done = action()
        if done.returncode != 0:
            sys.exit(f"{done.args} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        wall = time.monotonic() - started
        time.sleep(SETTLE)
        after = live_processes(host_pids())
    finally:
        subprocess.run(["accton", "off"], check=True, capture_output=True)
    measured = sum(b - a for a, b in zip(totals, bed.host_seconds(), strict=True))
    ended = {
        pid: proc
        for pid, proc in on_hosts(ended_processes(pacct), set(before) | set(after)).items()
        if pid not in after  # a pid reused after its process ended: /proc has the live one
    }
    pacct.unlink()
    parents = {**ended, **before, **after}
    old = set(before)
    by_role: dict[str, float] = defaultdict(float)
    for pid, proc in [*after.items(), *ended.items()]:
        # a process alive before the deploy counts only what it used since
        used = proc.cpu - (before[pid].cpu if pid in before else 0.0)
        by_role[role(proc, parents, old)] += used
    if verbose:
        for proc in sorted([*after.values(), *ended.values()], key=lambda p: p.pid):
            used = proc.cpu - (before[proc.pid].cpu if proc.pid in before else 0.0)
            parent = parents.get(proc.ppid)
            print(
                f"{proc.pid:>8} {'alive' if proc.pid in after else 'ended'} {proc.comm:<16}"
                f" parent {parent.comm if parent else '?':<16} {used:.3f} s"
                f" {role(proc, parents, old)}"
            )
    n = len(bed.hosts)
    return Profile(n, wall, measured / n, {name: cpu / n for name, cpu in by_role.items()})


def report(profiles: list[Profile], own_disks: bool) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sizes = [p.hosts for p in profiles]
    lines = [
        BEGIN,
        "## Where a host's CPU goes in a warm redeploy",
        "",
        f"Run {when} on {machine()}.",
        "",
        "Command: `.venv/bin/python bench/host_cpu.py` (as root). One profiled warm redeploy",
        "(a one-line change, after a cold deploy and two warm-ups) per fleet size, on the",
        "testbed of bench/fleet_compare.py"
        + (", each host's base dir a tmpfs of its own." if own_disks else " (--shared-disk).")
        + " CPU seconds per host, averaged",
        "over the hosts: live processes from /proc, ended ones from process accounting.",
        "",
        "| role | " + " | ".join(f"{n} host(s)" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for name in ROLES:
        cells = [f"{p.by_role.get(name, 0.0):.3f} s" for p in profiles]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    def app(p: Profile) -> float:
        return sum(p.by_role.get(name, 0.0) for name in APP_ROLES)

    def rows_sum(p: Profile) -> float:
        return sum(p.by_role.values())

    totals: dict[str, Callable[[Profile], float]] = {
        "unattributed: accounting rounds each ended process down to 1/100 s": lambda p: (
            p.measured - rows_sum(p)
        ),
        "the app's own (the first three rows)": app,
        "shipyard's own, at most (the rest, unattributed included)": lambda p: p.measured - app(p),
        "the hosts' cpuacct groups (what fleet_compare reports)": lambda p: p.measured,
    }
    for label, pick in totals.items():
        figures = " | ".join(f"{pick(p):.3f} s" for p in profiles)
        lines.append(f"| **{label}** | {figures} |")
    walls = " | ".join(f"{p.wall:.2f} s" for p in profiles)
    lines.append(f"| wall time of the deploy | {walls} |")
    lines += ["", END, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,16", help="fleet sizes, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    parser.add_argument("--verbose", action="store_true", help="list every process counted")
    parser.add_argument(
        "--phase",
        choices=("warm", "provision", "deploy"),
        default="warm",
        help="what to profile: a warm redeploy (written to BENCHMARKS.md), or a cold run's"
        " provision or deploy (printed only)",
    )
    parser.add_argument(
        "--shared-disk",
        action="store_true",
        help="the hosts' base dirs on this machine's filesystem, not one filesystem per host",
    )
    args = parser.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    if os.geteuid() != 0:
        sys.exit("host_cpu.py makes network namespaces and cgroups, and turns on accounting: root")
    if shutil.which("accton") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "acct"], check=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    nonce = os.urandom(3).hex()
    profiles = []
    for n in sizes:
        print(f"{n} host(s) …", flush=True)
        profiles.append(profile_size(n, nonce, args.phase, args.verbose, not args.shared_disk))
    section = report(profiles, not args.shared_disk)
    if not args.no_write and args.phase == "warm":
        write_section(section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
