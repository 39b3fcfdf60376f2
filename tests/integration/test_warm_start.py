"""Warm start on a deployed app: a served `deploy` and `run` do what the program does cold."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow


def _program(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _served(directory: Path) -> int:
    return sum(log.read_text().count("served pid") for log in directory.glob("*.log"))


def test_a_served_deploy_and_run_act_as_the_program_does(
    deployment: Deployment,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warm = tmp_path / "warm"
    warm.mkdir(mode=0o700)
    monkeypatch.setenv("SHIPYARD_WARM_DIR", str(warm))
    project = deployment.project
    assert _program("--version", cwd=project).returncode == 0  # cold: leaves a server
    deadline = time.monotonic() + 60
    while not list(warm.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.05)

    deployment.set_greeting("served warm")
    deployed = _program("deploy", "--skip-tests", cwd=project)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip() == f"http://127.0.0.1:{deployment.port}/"
    assert "served warm" in deployment.get("/")[1]

    # `run` is handed back: the command becomes the launcher's own process, exit status too
    script = "import os, sys; print(os.getpid(), os.environ['FLASK_APP']); sys.exit(3)"
    launcher = subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "run", "--", "python", "-c", script],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = launcher.communicate(timeout=60)
    assert launcher.returncode == 3, err
    assert out.split() == [str(launcher.pid), "flaskr:create_app()"]
    assert _served(warm) == 2  # the deploy and the run both went through the server

    servers = [int(lock.read_text().split()[0]) for lock in warm.glob("*.lock")]
    for pid in servers:
        os.kill(pid, signal.SIGTERM)
