"""End to end: the runtime dies under load (kill -9 of supervisord, of the nginx master, of
both) and `status`, `start` and a deploy take it back, with real nginx, supervisord and
gunicorn; `destroy --purge` after supervisord died leaves nothing running.

Each case is appended as a JSON line to the file named by SHIPYARD_FAULT_REPORT, when set.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from faultreport import record
from shipyard.host.layout import HostLayout
from shipyard.host.runtime import stop_runtime
from shipyard.host.state import app_lock, load_state
from shipyard.host.supervisor import Supervisor

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = [pytest.mark.slow, pytest.mark.fault]
SLOTS = ("blue", "green")


@dataclass(frozen=True)
class Running:
    pid: int
    ppid: int
    cmdline: str


def _of_base(base: Path) -> list[Running]:
    """Every process that names the base on its command line or has a file under it open
    (nginx's workers: its error log), read from /proc independently of shipyard's own code."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            links = _links(entry)
        except OSError:
            continue
        if stat[0] == "Z" or "shipyard.cli" in cmdline or "pytest" in cmdline:
            continue
        if str(base) in cmdline or any(link.startswith(f"{base}/") for link in links):
            found.append(Running(int(entry.name), int(stat[1]), cmdline))
    return found


def _links(proc: Path) -> list[str]:
    """Where the process's fds point (one closed while it is read is left out)."""
    links = []
    for fd in (proc / "fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            continue
    return links


def _nginx_master(base: Path) -> Running:
    masters = [p for p in _of_base(base) if p.cmdline.startswith("nginx: master")]
    assert len(masters) == 1, masters
    return masters[0]


def _port_holders(port: int) -> set[int]:
    inodes = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    holders = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(link in inodes for link in _links(entry)):
                holders.add(int(entry.name))
        except OSError:
            continue
    return holders


def _report(fault: str, command: str, failed: int, code: int, message: str) -> None:
    lines = message.strip().splitlines()
    killed = fault in ("supervisord", "nginx master", "both")
    what = f"{fault} killed with SIGKILL" if killed else fault
    record(
        f"{what}; then `shipyard {command}`"
        if command != "kill -9"
        else f"{what} (the request loop during the kill)",
        target="local",
        exit_code=code,
        message=lines[0] if lines else "",
        failed_requests=failed,
    )


def _kill(deployment: Deployment, fault: str) -> None:
    base = deployment.base
    if fault in ("supervisord", "both"):
        os.kill(int((base / ".shipyard" / "supervisord.pid").read_text()), signal.SIGKILL)
    if fault in ("nginx master", "both"):
        os.kill(_nginx_master(base).pid, signal.SIGKILL)


def _settled(deployment: Deployment) -> None:
    """The old slot's retirement (a detached child holding the app's lock) is over."""
    with app_lock(deployment.app("flaskr"), "test", wait=60):
        pass


def _assert_whole(deployment: Deployment) -> None:
    """One supervisord, one nginx (its child, serving the port), one app server (on the
    live slot, supervised): nothing twice, no orphan."""
    base = deployment.base
    running = _of_base(base)
    supervisords = [p for p in running if "supervisord" in p.cmdline]
    assert len(supervisords) == 1, running
    supervisord = supervisords[0].pid
    master = _nginx_master(base)
    assert master.ppid == supervisord
    workers = [p for p in running if p.cmdline.startswith("nginx: worker")]
    assert workers and all(p.ppid == master.pid for p in workers), running
    assert _port_holders(deployment.port) <= {master.pid, *(w.pid for w in workers)}
    state = load_state(deployment.app("flaskr"))
    servers = [p for p in running if "gunicorn" in p.cmdline and p.ppid == supervisord]
    # the live slot's, and the previous release's kept warm for its rollback window
    by_slot = [[p for p in servers if f"run/{slot}.sock" in p.cmdline] for slot in SLOTS]
    assert all(len(found) <= 1 for found in by_slot), running
    assert len([p for p in servers if f"run/{state.slot}.sock" in p.cmdline]) == 1
    gunicorns = [p for p in running if "gunicorn" in p.cmdline]
    assert all(p.ppid in (supervisord, *(s.pid for s in servers)) for p in gunicorns), running
    supervisor = Supervisor(base / ".shipyard" / "supervisor.sock")
    info = supervisor.process("nginx")
    assert info is not None and info.pid == master.pid


def _status(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any]:
    code, out, _ = deployment.cli("status", str(deployment.project), "--json", capsys=capsys)
    return code, json.loads(out)


@pytest.mark.parametrize("fault", ["supervisord", "nginx master", "both"])
def test_the_runtime_recovers_under_load_from_a_kill(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], fault: str
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    live = load_state(deployment.app("flaskr")).live
    _settled(deployment)
    with deployment.under_load() as load:
        load.wait_for_more(30)
        _kill(deployment, fault)
        time.sleep(4)  # supervisord (if alive) tries to restart nginx: a bind() that fails
        load.wait_for_more(30)
        at_kill = len(load.failed)
        _report(fault, "kill -9", at_kill, 0, f"kill -9 {fault}")

        code, report = _status(deployment, capsys)
        host = report["hosts"][0]
        _report(fault, "status", len(load.failed) - at_kill, code, "; ".join(host["runtime"]))
        # the orphans still serve the live release, and status says so, and what is wrong
        assert code == 1 and report["healthy"] is False
        assert host["healthy"] is True and host["serving_release"] == live
        problems = " ".join(host["runtime"])
        if fault != "nginx master":
            assert "supervisord is not running" in problems
            assert "live server (blue) runs without supervisord" in problems
        assert "orphaned nginx" in problems and f":{deployment.port}" in problems
        if fault == "nginx master":
            # the nginx supervisord restarts cannot bind(): never shown RUNNING
            [nginx] = [p for p in host["processes"] if p["name"] == "nginx"]
            assert nginx["state"] in ("STARTING", "BACKOFF", "FATAL"), nginx

        code, out, err = deployment.cli("start", project, capsys=capsys)
        _report(fault, "start", len(load.failed) - at_kill, code, out or err)
        assert code == 0, err
        load.wait_for_more(30)
        _assert_whole(deployment)
        code, report = _status(deployment, capsys)
        assert code == 0 and report["hosts"][0]["runtime"] == [], report

        deployment.set_greeting(f"after {fault}")
        code, out, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
        _report(fault, "deploy", len(load.failed) - at_kill, code, err.splitlines()[-1])
        assert code == 0, err
        load.wait_for_more(30)
    recovery_failed = len(load.failed) - at_kill
    assert recovery_failed == 0, load.failed[at_kill:][:5]
    assert at_kill == 0, load.failed[:5]
    assert load.ok > 100
    assert deployment.get("/version")[1] == f"after {fault}"
    _settled(deployment)
    _assert_whole(deployment)


def test_destroy_after_supervisord_died_stops_what_it_left(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    _settled(deployment)
    before = _of_base(deployment.base)
    assert len(before) >= 5  # supervisord, nginx and its workers, gunicorn and its workers
    _kill(deployment, "supervisord")
    code, out, err = deployment.cli("destroy", project, "--yes", "--purge", capsys=capsys)
    _report("supervisord", "destroy --purge", 0, code, out or err)
    assert code == 0, err
    assert "stopped flaskr's blue server, orphaned pid" in out
    assert "stopped nginx, orphaned pid" in out
    assert _of_base(deployment.base) == []
    assert not (deployment.base / "flaskr").exists()
    with pytest.raises(OSError):
        deployment.get("/")


def test_stop_after_supervisord_died_stops_the_apps_orphans(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    _settled(deployment)
    _kill(deployment, "supervisord")
    code, out, err = deployment.cli("stop", project, capsys=capsys)
    _report("supervisord", "stop", 0, code, out or err)
    assert code == 0 and "orphaned pid" in out, (out, err)
    assert not [p for p in _of_base(deployment.base) if "gunicorn" in p.cmdline]
    code, out, err = deployment.cli("start", project, capsys=capsys)
    assert code == 0, err
    _assert_whole(deployment)
    assert deployment.get("/version")[0] == 200


def test_a_port_another_program_holds_is_named(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    _settled(deployment)
    stop_runtime(HostLayout(deployment.base))
    script = deployment.project.parent / "squatter.py"
    script.write_text(
        "import socket, time\n"
        "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('127.0.0.1', {deployment.port})); s.listen(8)\n"
        "print('bound', flush=True); time.sleep(60)\n"
    )
    squatter = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline().strip() == "bound"
        code_, _, err = deployment.cli("start", project, capsys=capsys)
        _report("the port held by another program", "start", 0, code_, err)
        assert code_ != 0 and code_ != 70
        assert f"127.0.0.1:{deployment.port} is held by pid {squatter.pid}" in err
        assert f"({sys.executable} {script})" in err and "Traceback" not in err
    finally:
        squatter.kill()
        squatter.wait()
        if squatter.stdout is not None:
            squatter.stdout.close()
    code_, _, err = deployment.cli("start", project, capsys=capsys)
    assert code_ == 0, err
    assert deployment.get("/version")[0] == 200
    _assert_whole(deployment)


def test_an_upgraded_runtime_restarts_nginx_on_its_own_sockets_under_load(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """A base whose nginx started without the start script (an earlier shipyard's): the
    next deploy changes its program, and nginx restarts on its own sockets, held meanwhile."""
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    _settled(deployment)
    conf = deployment.base / ".shipyard" / "supervisord.conf"
    text = conf.read_text()
    older = re.sub(r"^command = \S+ -I -S \S+/nginx-start \S+ ", "command = ", text, flags=re.M)
    assert older != text
    conf.write_text(older)
    supervisor = Supervisor(deployment.base / ".shipyard" / "supervisor.sock")
    assert "nginx" in supervisor.update()  # restarted the old way: its port closes a while
    deadline = time.monotonic() + 15
    while not _port_holders(deployment.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    deployment.wait_for_status("/version", 200)
    before = _nginx_master(deployment.base).pid

    with deployment.under_load() as load:
        load.wait_for_more(30)
        deployment.set_greeting("upgraded")
        code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
        upgrade = "a new nginx program (an upgrade), under load"
        _report(upgrade, "deploy", len(load.failed), code, err.splitlines()[-1])
        assert code == 0, err
        load.wait_for_more(30)
    assert load.failed == [], load.failed[:5]
    assert conf.read_text() == text
    assert _nginx_master(deployment.base).pid != before
    assert deployment.get("/version")[1] == "upgraded"
    _settled(deployment)
    _assert_whole(deployment)
