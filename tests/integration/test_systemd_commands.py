"""End to end: the systemd units rendered for the example app, as shipyard deployed it, run
the app. No systemd runs as PID 1 here, so each unit's ExecStart= is run as systemd would
run it (its Environment= alone, in its WorkingDirectory=, as its User=) while the app's
supervisor programs are stopped; the app then answers on its slot's socket and through
nginx, and stops within TimeoutStopSec= on its KillSignal=. What this does not run:
systemd itself (its restarts, the hardening's enforcement, journald)."""

from __future__ import annotations

import grp
import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.host import health
from shipyard.host.release import release_manifest, release_spec
from shipyard.host.render import units
from shipyard.host.state import load_state
from unitfiles import Unit, load

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

TICKER = (
    "\n[processes.ticker]\n"
    "command = '''python -c \"import os, time; print('tick', os.environ['SHIPYARD_RELEASE'], "
    "flush=True); time.sleep(3600)\"'''\n"
)


def _run(unit: Unit, journal: Path) -> subprocess.Popen[bytes]:
    """The unit's command as systemd starts it: a clean environment (Environment= and what
    User= sets), its directory, its user; its output into `journal`."""
    user = unit.get("Service", "User")
    entry = pwd.getpwnam(user)
    env = {"USER": user, "LOGNAME": user, "SHELL": entry.pw_shell, **unit.environment()}
    argv = unit.exec_start()
    if entry.pw_uid != os.geteuid():
        argv = ["runuser", "-u", user, "--", *argv]
    with journal.open("wb") as output:
        return subprocess.Popen(
            argv,
            cwd=unit.get("Service", "WorkingDirectory"),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a control group of its own, near enough: its process group
        )


def _stop(unit: Unit, process: subprocess.Popen[bytes]) -> float:
    """KillSignal= to the whole group (systemd's KillMode=control-group); the seconds it
    took, which must stay under TimeoutStopSec=."""
    sig = signal.Signals[unit.get("Service", "KillSignal")]
    started = time.monotonic()
    os.killpg(process.pid, sig)
    process.wait(timeout=float(unit.get("Service", "TimeoutStopSec")))
    return time.monotonic() - started


def test_the_units_commands_run_the_deployed_app(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    d = deployment
    spec_file = d.project / "shipyard.toml"
    spec_file.write_text(spec_file.read_text() + TICKER)
    project = str(d.project)
    code, _, err = d.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    app = d.app("flaskr")
    state = load_state(app)
    assert state.live is not None and state.slot is not None
    release, slot = state.live, state.slot
    spec = release_spec(app, release)

    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    unit_dir = tmp_path / "units"
    for file in units.slot_files(
        spec,
        app,
        release,
        slot,
        launcher=app.host.launcher,
        user=user,
        group=group,
        tree=release_manifest(app, release).is_tree,
    ):
        path = unit_dir / file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
    names = units.slot_units(spec, app, slot)
    assert names == [f"flaskr-web@{slot}.service", f"flaskr-ticker@{slot}.service"]
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
    )
    assert verified.returncode == 0 and str(unit_dir) not in verified.stderr, verified.stderr

    code, _, err = d.cli("stop", project, capsys=capsys)
    assert code == 0, err
    socket = app.socket(slot)
    healthy = health.Healthy.of(spec.healthcheck)
    assert not health.probe_socket(socket, spec.healthcheck.request_path, "localhost", healthy).ok

    web, ticker = (load(unit_dir, name) for name in names)
    running = [
        (web, _run(web, tmp_path / "web.out")),
        (ticker, _run(ticker, tmp_path / "ticker.out")),
    ]
    try:
        probe = health.wait_until(
            lambda: health.probe_socket(
                socket, spec.healthcheck.request_path, "localhost", healthy
            ),
            20,
        )
        assert probe.ok, probe.detail
        # nginx, still pointed at the slot's socket, reaches the app the unit started: its
        # page (read from its database in shared/data) and its greeting
        status, body, served = d.get("/")
        assert status == 200 and served == release, body
        greeting = re.search(
            r'^GREETING = "(.*)"$', (d.project / "flaskr/views.py").read_text(), re.M
        )
        assert greeting is not None
        assert d.get("/version")[:2] == (200, greeting[1])
        for _, process in running:
            assert process.poll() is None, "a unit's program exited"
    finally:
        took = [_stop(unit, process) for unit, process in running]
    # the env file reached the program through the launcher, as under supervisor
    assert f"tick {release}" in (tmp_path / "ticker.out").read_text()
    assert max(took) < float(web.get("Service", "TimeoutStopSec")), took
