"""An aiohttp app end to end through nginx (server.type = "aiohttp": gunicorn with aiohttp's
worker): a flat project (requirements.txt and app.py, an async app factory) deploys, answers
HTTP and WebSocket requests, redeploys under load with no failed request, closes a WebSocket
left on the old release once its drain has passed, and stops gracefully."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from shipyard.host import drain
from shipyard.host.state import app_lock, load_state

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

APP = "hello-aiohttp"
DRAIN = 2

SPEC = """\
name = "hello-aiohttp"
entry = "app:create_app()"
listen = "127.0.0.1:{port}"
rollback_window = 0

[server]
type = "aiohttp"
workers = 1
graceful_timeout = 3
websocket_drain = {drain}

[tests]
enabled = false

[healthcheck]
path = "/health"
"""

APP_PY = '''\
"""A small aiohttp app: a route, a health route, a WebSocket echo."""

import os

from aiohttp import WSMsgType, web

GREETING = "hello from aiohttp"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=GREETING)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    await ws.send_str(os.environ.get("SHIPYARD_RELEASE", "dev"))
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


async def create_app() -> web.Application:
    app = web.Application()
    app.add_routes([web.get("/", hello), web.get("/health", health), web.get("/ws", echo)])
    return app
'''


def _shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_an_aiohttp_app_deploys_serves_websockets_redeploys_and_stops(
    bare_deployment: Deployment,
) -> None:
    deployment = bare_deployment
    project = deployment.project
    project.mkdir(parents=True)
    (project / "requirements.txt").write_text("aiohttp>=3.9\n")
    (project / "app.py").write_text(APP_PY)
    (project / "shipyard.toml").write_text(SPEC.format(port=deployment.port, drain=DRAIN))

    first = _shipyard("deploy", str(project), "--skip-tests")
    assert first.returncode == 0, first.stderr
    app = deployment.app(APP)
    old = load_state(app).live
    assert old is not None
    assert deployment.get("/") == (200, "hello from aiohttp", old)
    url = f"ws://127.0.0.1:{deployment.port}/ws"
    with connect(url, open_timeout=10) as ws:
        assert ws.recv(timeout=10) == old
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"

    before = connect(url, open_timeout=10)
    assert before.recv(timeout=10) == old
    module = project / "app.py"
    module.write_text(
        re.sub(r'^GREETING = ".*"$', 'GREETING = "second"', module.read_text(), flags=re.M)
    )
    with deployment.under_load("/") as load:
        load.wait_for_more(10)
        done = _shipyard("deploy", str(project), "--skip-tests")
        assert done.returncode == 0, done.stderr
        new = load_state(app).live
        assert new is not None and new != old
        with connect(url, open_timeout=10) as after:
            assert after.recv(timeout=10) == new
        before.send("still there?")
        assert before.recv(timeout=10) == "still there?"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                before.recv(timeout=drain.GRACE / 2)
        load.wait_for_more(10)
    assert load.failed == [], load.failed[:5]
    assert load.bodies == {"hello from aiohttp", "second"}
    assert time.monotonic() - started < drain.GRACE  # ended by the drain, not by nginx
    # aiohttp's worker ends the handlers still running as it stops: the client sees the
    # connection drop, with no close frame
    assert closed.value.rcvd is None, closed.value

    with app_lock(app, "test", wait=60):
        pass
    stopped = _shipyard("stop", str(project))
    assert stopped.returncode == 0, stopped.stderr
    log = _shipyard("logs", str(project), "--process", "web", "-n", "100000")
    assert "Using worker: aiohttp.GunicornWebWorker" in log.stdout
    supervisord = (app.host.logs / "supervisord.log").read_text()
    for slot in ("blue", "green"):
        assert f"stopped: {app.program('web', slot)} (exit status 0)" in supervisord
