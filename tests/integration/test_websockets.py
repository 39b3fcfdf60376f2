"""WebSockets end to end through nginx: the ASGI example under uvicorn.

A handshake through nginx works; across a deploy, a WebSocket opened before it stays on the
old release for the drain time, then is closed with code 1012, while new ones reach the new
release at once and plain requests never fail.
"""

from __future__ import annotations

import json
import re
import shutil
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
from shipyard.host.supervisor import Supervisor

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "asgi-app"
APP = "asgi-app"
DRAIN = 4  # seconds: long enough to talk to the old release after the deploy returns


@pytest.fixture
def asgi(bare_deployment: Deployment) -> Deployment:
    """A copy of the ASGI example on a free port, with a short drain and one worker."""
    project = bare_deployment.project
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"))
    spec = project / "shipyard.toml"
    text = f'listen = "127.0.0.1:{bare_deployment.port}"\n' + spec.read_text()
    text = _replace_once(text, r"^workers = \d+", "workers = 1")
    text = _replace_once(text, r"^websocket_drain = \d+", f"websocket_drain = {DRAIN}")
    spec.write_text(text)
    return bare_deployment


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"{pattern!r} matched {count} times"
    return new


def _shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    """The `shipyard` program itself, whose last steps go on in a detached child."""
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _ws(deployment: Deployment, path: str) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{deployment.port}{path}", open_timeout=10)


def _receive(ws: Connection) -> Any:
    return json.loads(ws.recv(timeout=10))


def _change(deployment: Deployment, text: str) -> None:
    module = deployment.project / "asgi_app" / "__init__.py"
    module.write_text(
        _replace_once(module.read_text(), r'^GREETING = ".*"$', f'GREETING = "{text}"')
    )


def test_a_websocket_handshake_through_nginx_reaches_the_app(
    asgi: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = asgi.cli("deploy", str(asgi.project), capsys=capsys)  # its own tests pass
    assert code == 0, err
    status, body, release = asgi.get("/")
    assert (status, body) == (200, "hello from asgi-app") and release
    with _ws(asgi, "/ws/echo") as ws:
        for text in ("hello", "x" * 70000, "ünïcode"):
            ws.send(text)
            assert ws.recv(timeout=10) == text
    with _ws(asgi, "/ws/release") as ws:
        assert _receive(ws) == {"release": release}
    assert json.loads(asgi.get("/release")[1]) == {"release": release}


def _deploy_with_a_websocket_open(asgi: Deployment, rollback_window: int) -> None:
    """Deploy, open a WebSocket, redeploy under load; check what happens to both releases."""
    spec = asgi.project / "shipyard.toml"
    spec.write_text(f"rollback_window = {rollback_window}\n" + spec.read_text())
    project = str(asgi.project)
    first_deploy = _shipyard("deploy", project, "--skip-tests")
    assert first_deploy.returncode == 0, first_deploy.stderr
    app = asgi.app(APP)
    old = load_state(app)
    assert old.live is not None and old.slot is not None

    before = _ws(asgi, "/ws/release")
    assert _receive(before) == {"release": old.live}
    _change(asgi, "second version")
    with asgi.under_load("/") as load:
        load.wait_for_more(10)
        started = time.monotonic()
        done = _shipyard("deploy", project, "--skip-tests")
        assert done.returncode == 0, done.stderr
        new = load_state(app).live
        assert new is not None and new != old.live

        # a new WebSocket reaches the new release at once, while the old one is still open
        with _ws(asgi, "/ws/release") as after:
            assert _receive(after) == {"release": new}
            before.send("still there?")
            assert _receive(before) == {"release": old.live, "message": "still there?"}
            after.send("and you?")
            assert _receive(after) == {"release": new, "message": "and you?"}

        # then, once its drain time has passed, the old release closes it: service restart
        # (well before the minute nginx's old workers would otherwise be waited for)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                before.recv(timeout=drain.GRACE / 2)
        closed_after = time.monotonic() - started
        load.wait_for_more(10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012, closed.value
    assert closed_after >= DRAIN  # not cut before its drain time
    assert load.failed == [], load.failed[:5]
    assert load.bodies == {"hello from asgi-app", "second version"}

    with app_lock(app, "test", wait=60):  # the detached child is done
        assert load_state(app).warm is None  # not kept for a rollback window either
    supervisor = Supervisor(app.host.supervisor_socket)
    program = app.program("web", old.slot)
    deadline = time.monotonic() + 30
    while (info := supervisor.process(program)) is not None and info.state == "STOPPING":
        assert time.monotonic() < deadline, info
        time.sleep(0.1)
    assert info is None or info.state in ("STOPPED", "EXITED"), info
    with _ws(asgi, "/ws/release") as again:
        assert _receive(again) == {"release": new}
    log = app.logs / "shipyard-background.log"
    assert not log.exists() or "failed" not in log.read_text()


def test_an_open_websocket_drains_on_the_old_release_then_is_closed_with_1012(
    asgi: Deployment,
) -> None:
    _deploy_with_a_websocket_open(asgi, rollback_window=0)


def test_an_open_websocket_is_not_kept_for_the_rollback_window(asgi: Deployment) -> None:
    """The window keeps the old release warm for a rollback, but not its WebSockets: they
    get the drain time, then the old slot stops and a rollback would start it again."""
    _deploy_with_a_websocket_open(asgi, rollback_window=600)


FASTAPI_PYPROJECT = """\
[build-system]
requires = ["flit_core>=3.9,<4"]
build-backend = "flit_core.buildapi"

[project]
name = "app"
version = "0.1.0"
description = "A FastAPI project laid out as FastAPI's tutorial lays out bigger applications."
requires-python = ">=3.11"
dependencies = ["fastapi>=0.110"]
"""

FASTAPI_SPEC = """\
name = "fastapi-chat"
entry = "app.main:app"
kind = "asgi"
listen = "127.0.0.1:{port}"

[server]
type = "uvicorn"
workers = 1

[tests]
enabled = false

[healthcheck]
path = "/health"
"""

FASTAPI_MAIN = """\
from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            data = await websocket.receive_text()
            await websocket.send_text(f"Message text was: {data}")
    except WebSocketDisconnect:
        pass
"""


def test_a_fastapi_project_s_websocket_passes_nginx(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    """FastAPI alone, no uvicorn nor WebSocket library of its own: the WebSocket still works."""
    deployment = bare_deployment
    package = deployment.project / "app"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "main.py").write_text(FASTAPI_MAIN)
    (deployment.project / "pyproject.toml").write_text(FASTAPI_PYPROJECT)
    (deployment.project / "shipyard.toml").write_text(FASTAPI_SPEC.format(port=deployment.port))
    code, _, err = deployment.cli("deploy", str(deployment.project), capsys=capsys)
    assert code == 0, err
    assert deployment.get("/health")[:2] == (200, '{"status":"ok"}')
    with _ws(deployment, "/ws") as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "Message text was: hi"
