"""gunicorn starts while the release command runs, held: it binds its socket, but its workers
(which import the app) start only once the command has succeeded, and never if it fails.
Real nginx, supervisord and gunicorn; times are read from /proc, on the kernel's clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.host.layout import AppLayout
from shipyard.host.orphans import children
from shipyard.host.state import load_state
from shipyard.host.supervisor import Supervisor

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

TICKS = os.sysconf("SC_CLK_TCK")
TICK = 1 / TICKS


def _started(pid: int) -> float:
    """Seconds since boot when `pid` started, as /proc/uptime counts them."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[19]) / TICKS


@pytest.fixture
def marks() -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="sy-hold-", dir="/tmp"))
    where.chmod(0o1777)  # the release command runs as the app's user
    yield where
    for path in where.iterdir():
        path.unlink()
    where.rmdir()


def _with_release(deployment: Deployment, command: str) -> None:
    spec = deployment.project / "shipyard.toml"
    kept = [line for line in spec.read_text().splitlines() if not line.startswith("release")]
    spec.write_text(f"release = {json.dumps(command)}\n" + "\n".join(kept) + "\n")


def test_workers_start_once_the_release_command_has_succeeded(
    deployment: Deployment, marks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    done = marks / "done"
    _with_release(deployment, f"sh -c 'sleep 1; cut -d\" \" -f1 /proc/uptime > {done}'")
    deployment.set_greeting("held")
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    assert deployment.get("/version")[1] == "held"

    app = deployment.app("flaskr")
    info = Supervisor(app.host.supervisor_socket).process(
        app.program("web", load_state(app).slot or "")
    )
    assert info is not None and info.pid
    workers = children(info.pid)
    finished = float(done.read_text())
    assert len(workers) == 2
    # the server started during the command's second of sleep; its workers after it
    assert _started(info.pid) < finished - 0.5
    assert all(_started(worker) >= finished - TICK for worker in workers)
    assert not app.hold_file("blue").exists() and not app.hold_file("green").exists()


def test_a_failed_release_command_stops_the_held_server_before_any_worker(
    deployment: Deployment, marks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    live, app, idle, log, before = _live_and_idle(deployment, capsys)

    _with_release(deployment, "sh -c 'sleep 1; echo no schema; exit 3'")
    deployment.set_greeting("never")
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 1 and "the release command failed" in err and "no schema" in err
    assert deployment.get("/version")[2] == live

    started = _since(log, before)
    assert "Listening at" in started  # it was started, held
    assert "Booting worker" not in started  # and stopped with none of the app's code run
    stopped = Supervisor(app.host.supervisor_socket).process(app.program("web", idle))
    assert stopped is None or stopped.state not in ("RUNNING", "STARTING")
    assert not app.hold_file(idle).exists()


def test_a_deploy_killed_during_its_release_command_never_starts_the_held_workers(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    live, _, _, log, before = _live_and_idle(deployment, capsys)

    _with_release(deployment, "sh -c 'sleep 30'")
    deployment.set_greeting("killed")
    deploy = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "deploy", project, "--skip-tests"],
        env={**os.environ, "SHIPYARD_WARM": "0"},  # the process killed is the deploy itself
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while "Listening at" not in _since(log, before):  # started, held
        assert time.monotonic() < deadline and deploy.poll() is None
        time.sleep(0.05)
    deploy.kill()
    deploy.wait()
    time.sleep(3)  # the held server's look at its hold, and supervisord's retries
    output = _since(log, before)
    assert "deploy is gone" in output and "Booting worker" not in output
    assert deployment.get("/version")[2] == live

    _with_release(deployment, "true")
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    assert deployment.get("/version")[1] == "killed"


def _live_and_idle(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> tuple[str | None, AppLayout, str, Path, int]:
    """After a first deploy: the release serving, the app, its idle slot, and that slot's
    log with its size so far."""
    assert deployment.cli("deploy", str(deployment.project), "--skip-tests", capsys=capsys)[0] == 0
    app = deployment.app("flaskr")
    idle = "green" if load_state(app).slot == "blue" else "blue"
    log = app.logs / f"web-{idle}.log"
    return deployment.get("/version")[2], app, idle, log, log.stat().st_size if log.exists() else 0


def _since(log: Path, offset: int) -> str:
    if not log.exists():
        return ""
    with log.open() as output:
        output.seek(offset)
        return output.read()
