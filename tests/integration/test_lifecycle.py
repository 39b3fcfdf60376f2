"""End to end on this machine: real nginx, supervisord and gunicorn, through the CLI."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest

from shipyard.errors import LockHeld
from shipyard.host.state import app_lock, load_state
from shipyard.host.supervisor import UP_STATES, Supervisor

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow


def test_deploy_redeploy_under_load_and_rollback(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    code, out, err = deployment.cli("deploy", project, capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"http://127.0.0.1:{deployment.port}/"
    status, body, first = deployment.get("/")
    assert status == 200 and "Hello from flaskr" in body
    static_status, css, header = deployment.get("/static/style.css")
    assert static_status == 200 and header == first and "{" in css

    with deployment.under_load() as load:
        for round_ in range(3):
            deployment.set_greeting(f"round {round_}")
            code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
            assert code == 0, err
        load.wait_for_more(20)  # requests after the last switch, too
    assert load.failed == [], load.failed[:5]
    assert load.ok > 100
    assert {"Hello from flaskr", "round 2"} <= load.bodies

    _, body, latest = deployment.get("/version")
    assert body == "round 2"
    code, _, err = deployment.cli("rollback", project, capsys=capsys)
    assert code == 0, err
    _, body, header = deployment.get("/version")
    assert body == "round 1" and header != latest
    code, _, err = deployment.cli("rollback", project, "--to", first or "", capsys=capsys)
    assert code == 0, err
    assert deployment.get("/version")[1] == "Hello from flaskr"


def test_failures_leave_the_serving_release_untouched(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    _, _, live = deployment.get("/")

    tests = deployment.project / "tests" / "test_app.py"
    original_tests = tests.read_text()
    tests.write_text(original_tests + "\n\ndef test_broken() -> None:\n    assert 1 == 2\n")
    code, _, err = deployment.cli("deploy", project, capsys=capsys)
    assert code == 1 and "tests failed" in err and "test_broken" in err
    assert deployment.get("/")[2] == live
    # the release installed beside the failing tests is gone: no release the state does not know
    app = deployment.app("flaskr")
    assert sorted(p.name for p in app.releases.iterdir()) == [load_state(app).live]
    tests.write_text(original_tests)

    spec = deployment.project / "shipyard.toml"
    original_spec = spec.read_text()
    release_line = 'release = "flask --app flaskr init-db"\n'  # a top-level key: goes first
    spec.write_text("release = \"sh -c 'echo schema conflict; exit 3'\"\n" + original_spec)
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 1 and "the release command failed" in err and "schema conflict" in err
    assert "Nothing was switched" in err
    assert deployment.get("/")[2] == live

    # an app that dies at import: caught by the release command that imports it, and without
    # one, by the new server's crash before its health check
    views = deployment.project / "flaskr" / "views.py"
    original_views = views.read_text()
    views.write_text(original_views + '\nraise RuntimeError("boom at import")\n')
    for release in (release_line, ""):
        spec.write_text(release + original_spec)
        code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
        assert code == 1 and "boom at import" in err and "Traceback" not in err.split("|")[0]
        assert deployment.get("/")[2] == live
    assert "the release command failed" not in err
    views.write_text(original_views)
    spec.write_text(original_spec)

    spec.write_text(original_spec.replace('path = "/health"', 'path = "/nope"\ntimeout = 3'))
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 1 and "failed its health check" in err and "HTTP 404" in err
    assert deployment.get("/")[2] == live
    code, out, _ = deployment.cli("status", project, "--json", capsys=capsys)
    assert code == 0 and '"healthy": true' in out
    assert out.count('"state": "RUNNING"') == 2  # nginx and the live web process only


def test_data_and_config_survive_redeploys_and_rollbacks(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    conn = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=10)
    conn.request(
        "POST",
        "/entries",
        body="body=kept",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert conn.getresponse().status == 302
    conn.close()
    deployment.set_greeting("second")
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    assert "kept" in deployment.get("/api/entries")[1]
    assert deployment.cli("rollback", project, capsys=capsys)[0] == 0
    assert "kept" in deployment.get("/api/entries")[1]

    code, _, err = deployment.cli(
        "config", "set", "--dir", project, "GREETING_NOTE=hi there", capsys=capsys
    )
    assert code == 0, err
    # `run` replaces its process (exec), so it runs in a child here
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "shipyard.cli",
            "run",
            project,
            "--",
            "python",
            "-c",
            "import os; print(os.environ['GREETING_NOTE'], os.environ['FLASK_APP'])",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "hi there flaskr:create_app()"
    env_files = list((deployment.base / "flaskr" / "shared").glob("env.*"))
    assert env_files and all(f.stat().st_mode & 0o777 == 0o600 for f in env_files)
    live_env = max(env_files, key=lambda f: f.stat().st_mtime).read_text()
    assert "GREETING_NOTE='hi there'" in live_env
    assert deployment.get("/version")[0] == 200


def _deploy_child(project: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "shipyard.cli", "deploy", project, "--skip-tests", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_deploys_wait_for_the_lock_or_fail_naming_it(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    deployment.set_greeting("concurrent")
    first, second = _deploy_child(project), _deploy_child(project)
    results = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, results
    assert deployment.get("/version")[1] == "concurrent"

    lock = deployment.base / "flaskr" / ".lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(lock)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0); os.write(fd, b'deploy by tester pid 1\\n')\n"
            "print('locked', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        blocked = _deploy_child(project, "--wait", "0")
        _, err = blocked.communicate(timeout=60)
        assert blocked.returncode == 75
        assert "locked by deploy by tester pid 1" in err
    finally:
        holder.kill()
        holder.communicate()


def test_dry_run_changes_nothing_and_destroy_removes_the_app(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    code, out, _ = deployment.cli("deploy", project, "--dry-run", capsys=capsys)
    assert code == 0
    assert "dry run: nothing was changed" in out
    assert "nginx/sites/flaskr.conf" in out and "+    listen 127.0.0.1:" in out
    assert "first deploy here: run the setup command once: flask --app flaskr init-db" in out
    assert not (deployment.base / "flaskr" / "releases").exists()
    with pytest.raises(OSError):
        deployment.get("/")

    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    code, out, _ = deployment.cli("deploy", project, "--dry-run", capsys=capsys)
    assert code == 0 and "already installed" in out
    assert "run the setup command" not in out and "setup is done here already" in out
    # a deploy of the live release again: its env file is diffed against the live slot's,
    # whose secrets the plan masks too
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    code, out, err = deployment.cli("deploy", project, "--dry-run", capsys=capsys)
    config = json.loads((deployment.base / "flaskr" / "shared" / "config.json").read_text())
    assert code == 0 and config["FLASKR_SECRET_KEY"] not in out, err
    # unchanged: the file now, its secrets masked, is what would be written, masked
    assert re.search(r"= \S+/flaskr/shared/env\.(blue|green) \(unchanged\)", out), out
    assert deployment.cli("destroy", project, "--yes", capsys=capsys)[0] == 0
    with pytest.raises(OSError):
        deployment.get("/")
    assert (deployment.base / "flaskr" / "shared" / "config.json").exists()
    assert (deployment.base / "flaskr" / "shared" / "setup.json").exists()  # with the data
    assert deployment.cli("destroy", project, "--yes", "--purge", capsys=capsys)[0] == 0
    assert not (deployment.base / "flaskr").exists()


SLOW_ROUTE = """

import time as _time


@bp.get("/slow")
def slow() -> str:
    _time.sleep(float(request.args.get("seconds", "1")))
    return "slow done"
"""


def test_the_command_returns_while_the_old_slot_finishes_in_the_background(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """`shipyard deploy` returns once the new release serves; a detached child stops the old
    slot after nginx's old workers finish their requests, and holds the lock until then."""
    views = deployment.project / "flaskr" / "views.py"
    views.write_text(views.read_text() + SLOW_ROUTE)
    spec = deployment.project / "shipyard.toml"  # no window: the old slot stops once drained
    spec.write_text("rollback_window = 0\n" + spec.read_text())
    project = str(deployment.project)
    assert deployment.cli("deploy", project, "--skip-tests", capsys=capsys)[0] == 0
    app = deployment.app("flaskr")
    old_slot = load_state(app).slot
    assert old_slot is not None

    slow: list[tuple[int, str, str | None]] = []
    request = threading.Thread(target=lambda: slow.append(deployment.get("/slow?seconds=8")))
    request.start()
    time.sleep(0.5)  # in flight on the old slot, through one of nginx's current workers
    deployment.set_greeting("detached")
    started = time.monotonic()
    child = _deploy_child(project)
    _, err = child.communicate(timeout=120)
    returned_after = time.monotonic() - started
    assert child.returncode == 0, err
    assert deployment.get("/version")[1] == "detached"
    assert not slow, "the command waited for the old slot's request"
    with pytest.raises(LockHeld), app_lock(app, "test", wait=0):
        pass  # the detached child holds it while the old slot finishes its request
    supervisor = Supervisor(deployment.base / ".shipyard" / "supervisor.sock")
    old_program = app.program("web", old_slot)
    info = supervisor.process(old_program)
    assert info is not None and info.state == "RUNNING"

    request.join(timeout=30)
    assert slow and slow[0][:2] == (200, "slow done"), slow
    with app_lock(app, "test", wait=15):
        info = supervisor.process(old_program)
        assert info is None or info.state in ("STOPPED", "STOPPING", "EXITED"), info
    assert returned_after < 8, returned_after
    log = app.logs / "shipyard-background.log"
    assert not log.exists() or "failed" not in log.read_text()


def _shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    """The `shipyard` program itself, whose last steps go on in a detached child."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_rollback_inside_the_window_reuses_the_running_release(
    deployment: Deployment,
) -> None:
    project = str(deployment.project)
    spec = deployment.project / "shipyard.toml"
    # long enough for a loaded machine to deploy and roll back inside it
    spec.write_text("rollback_window = 10\n" + spec.read_text())
    assert _shipyard("deploy", project, "--skip-tests").returncode == 0
    first = deployment.get("/version")[2]
    app = deployment.app("flaskr")
    supervisor = Supervisor(app.host.supervisor_socket)
    serving = json.loads(app.state_file.read_text())["slot"]
    started = supervisor.process(app.program("web", serving))
    assert started is not None
    deployment.set_greeting("warm")
    done = _shipyard("deploy", project, "--skip-tests")
    assert done.returncode == 0, done.stderr
    second = deployment.get("/version")[2]
    warm = json.loads(app.state_file.read_text())["warm"]
    assert warm["release"] == first and first != second and warm["slot"] == serving
    kept = supervisor.process(app.program("web", warm["slot"]))
    # still up after the switch, and the very server the first deploy started (a warm
    # redeploy can finish inside its startsecs, so it may still be STARTING)
    assert kept is not None and kept.state in UP_STATES and kept.pid == started.pid

    back = _shipyard("rollback", project)
    assert back.returncode == 0, back.stderr
    assert deployment.get("/version")[2] == first
    again = supervisor.process(app.program("web", warm["slot"]))
    assert again is not None and again.pid == kept.pid  # the same server: nothing started
    left = json.loads(app.state_file.read_text())["warm"]
    assert left["release"] == second

    # once its window has passed, the release rolled back from is stopped
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and json.loads(app.state_file.read_text())["warm"]:
        time.sleep(0.2)
    assert json.loads(app.state_file.read_text())["warm"] is None
    gone = supervisor.process(app.program("web", left["slot"]))
    assert gone is None or gone.state != "RUNNING"
    assert deployment.get("/version")[2] == first
