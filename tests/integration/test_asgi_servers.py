"""Each ASGI server end to end through nginx, on the ASGI example: it answers on its socket
(of the usual mode) and through nginx, WebSockets included; a redeploy under load fails no
request; a WebSocket open on the old release is closed once its drain has passed (with code
1012 where the server sends one); `shipyard stop` stops it gracefully."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.sync.connection import Connection

from shipyard.host import drain
from shipyard.host.state import app_lock, load_state

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "asgi-app"
APP = "asgi-app"
DRAIN = 2  # seconds an open WebSocket stays on the old release after a deploy

# How each server ends a WebSocket still open when it stops: a close frame with this code, or
# None: the connection drops once graceful_timeout has passed, with no close frame.
CLOSE_CODE = {"uvicorn": 1012, "gunicorn-asgi": None, "granian": None}
# What each server logs as it stops gracefully (and the app's lifespan shutdown with it).
STOPPED = {
    "uvicorn": "Application shutdown complete.",
    "gunicorn-asgi": "Worker shutting down...",
    "granian": "Shutting down granian",
}
# Where each server says what it runs.
STARTED = {
    "uvicorn": "Uvicorn running on socket",
    "gunicorn-asgi": "Using worker: asgi",
    "granian": "Starting granian",
}


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"{pattern!r} matched {count} times"
    return new


def _shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    """The `shipyard` program itself, whose last steps (the drain) go on in a detached child."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ws(port: int, path: str) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{port}{path}", open_timeout=10)


def _receive(ws: Connection) -> Any:
    return json.loads(ws.recv(timeout=10))


@pytest.mark.parametrize("server", sorted(CLOSE_CODE))
def test_an_asgi_server_serves_redeploys_drains_and_stops(
    bare_deployment: Deployment, server: str
) -> None:
    deployment = bare_deployment
    project = deployment.project
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"))
    spec = project / "shipyard.toml"
    text = f'listen = "127.0.0.1:{deployment.port}"\nrollback_window = 0\n' + spec.read_text()
    text = _replace_once(text, r"^type = .*$", f'type = "{server}"')
    text = _replace_once(text, r"^websocket_drain = \d+", f"websocket_drain = {DRAIN}")
    text = _replace_once(text, r"^\[server\]$", "[server]\ngraceful_timeout = 3")
    spec.write_text(text)

    first = _shipyard("deploy", str(project), "--skip-tests")
    assert first.returncode == 0, first.stderr
    app = deployment.app(APP)
    old = load_state(app)
    assert old.live is not None and old.slot is not None
    sock = app.socket(old.slot)
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == (0o660 if os.geteuid() == 0 else 0o600)
    assert deployment.get("/") == (200, "hello from asgi-app", old.live)
    with _ws(deployment.port, "/ws/echo") as ws:
        for message in ("hello", "x" * 70000):
            ws.send(message)
            assert ws.recv(timeout=10) == message

    before = _ws(deployment.port, "/ws/release")
    assert _receive(before) == {"release": old.live}
    module = project / "asgi_app" / "__init__.py"
    module.write_text(
        _replace_once(module.read_text(), r'^GREETING = ".*"$', 'GREETING = "second version"')
    )
    with deployment.under_load("/") as load:
        load.wait_for_more(10)
        done = _shipyard("deploy", str(project), "--skip-tests")
        assert done.returncode == 0, done.stderr
        new = load_state(app).live
        assert new is not None and new != old.live
        with _ws(deployment.port, "/ws/release") as after:
            assert _receive(after) == {"release": new}
            before.send("still there?")  # the old release still holds its WebSocket
            assert _receive(before) == {"release": old.live, "message": "still there?"}
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                before.recv(timeout=drain.GRACE / 2)
        load.wait_for_more(10)
    assert load.failed == [], load.failed[:5]
    assert load.bodies == {"hello from asgi-app", "second version"}
    assert time.monotonic() - started < drain.GRACE  # ended by the drain, not by nginx
    received = closed.value.rcvd
    assert (received.code if received else None) == CLOSE_CODE[server], closed.value

    with app_lock(app, "test", wait=60):  # the detached child is done with the old slot
        pass
    stopped = _shipyard("stop", str(project))
    assert stopped.returncode == 0, stopped.stderr
    log = _shipyard("logs", str(project), "--process", "web", "-n", "100000")
    assert log.returncode == 0, log.stderr
    assert STARTED[server] in log.stdout
    assert log.stdout.count(STOPPED[server]) >= 2, log.stdout[-3000:]  # both releases
    supervisord = (app.host.logs / "supervisord.log").read_text()
    for slot in ("blue", "green"):
        name = app.program("web", slot)
        assert f"stopped: {name} (exit status 0)" in supervisord, supervisord[-2000:]
        assert f"stopped: {name} (terminated by SIGKILL)" not in supervisord
