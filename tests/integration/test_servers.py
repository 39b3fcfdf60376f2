"""End to end under the other app servers: gunicorn with uvicorn's worker (an ASGI app) and uWSGI
(the WSGI example); the other ASGI servers are in test_asgi_servers.py.

uWSGI has no wheel on PyPI: the first deploy compiles it (about 45 s); the session's shared
SHIPYARD_CACHE keeps the wheel for the rest of the run.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

ASGI_PYPROJECT = """\
[build-system]
requires = ["flit_core>=3.9,<4"]
build-backend = "flit_core.buildapi"

[project]
name = "hello-asgi"
version = "1.0.0"
description = "A pure ASGI app, no framework."
requires-python = ">=3.11"
dependencies = []
"""

ASGI_SPEC = """\
name = "hello-asgi"
entry = "hello_asgi:app"
kind = "asgi"
listen = "127.0.0.1:{port}"

[server]
type = "gunicorn-uvicorn"
workers = 1

[tests]
enabled = false

[healthcheck]
path = "/health"
"""

ASGI_APP = '''\
"""A pure ASGI app: plain text on every path, lifespan handled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

GREETING = "asgi one"

Message = dict[str, Any]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b"ok" if scope["path"] == "/health" else GREETING.encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
'''


def _replace_once(text: str, pattern: str, replacement: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.M)
    assert count == 1, f"{pattern!r} matched {count} times"
    return new


def _web_log(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> str:
    code, out, err = deployment.cli(
        "logs", str(deployment.project), "--process", "web", "-n", "100000", capsys=capsys
    )
    assert code == 0, err
    return out


def _deploy_redeploy_rollback(
    deployment: Deployment,
    capsys: pytest.CaptureFixture[str],
    path: str,
    first_text: str,
    change: Callable[[str], None],
) -> str:
    """Deploy, redeploy a change under load, roll back; return the first release id.

    The project serves `first_text` at `path`; `change(text)` makes it serve `text`.
    """
    project = str(deployment.project)
    code, out, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"http://127.0.0.1:{deployment.port}/"
    status, body, first = deployment.get(path)
    assert (status, body) == (200, first_text) and first

    change("second version")
    with deployment.under_load(path) as load:
        load.wait_for_more(10)
        code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
        # the loop shares this process (and its GIL) with the deploy: on a loaded machine it
        # may be a while before it has asked the new release enough times
        deadline = time.monotonic() + 30
        load.wait_for_more(20)
        while "second version" not in load.bodies and time.monotonic() < deadline:
            load.wait_for_more(5)
    assert code == 0, err
    status, body, second = deployment.get(path)
    assert (status, body) == (200, "second version")
    assert second and second != first
    assert load.failed == [], load.failed[:5]
    assert load.bodies == {first_text, "second version"}
    assert load.releases == {first, second}

    code, out, err = deployment.cli("rollback", project, capsys=capsys)
    assert code == 0, err
    assert out.strip().startswith(f"release {first} is live again")
    assert deployment.get(path) == (200, first_text, first)
    return first


def test_gunicorn_uvicorn_serves_an_asgi_app_redeploys_and_rolls_back(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    package = deployment.project / "hello_asgi"
    package.mkdir(parents=True)
    (deployment.project / "pyproject.toml").write_text(ASGI_PYPROJECT)
    (deployment.project / "shipyard.toml").write_text(ASGI_SPEC.format(port=deployment.port))
    module = package / "__init__.py"
    module.write_text(ASGI_APP)

    def change(text: str) -> None:
        module.write_text(
            _replace_once(module.read_text(), r'^GREETING = ".*"$', f'GREETING = "{text}"')
        )

    first = _deploy_redeploy_rollback(deployment, capsys, "/", "asgi one", change)
    assert deployment.get("/health") == (200, "ok", first)

    log = _web_log(deployment, capsys)
    assert "Using worker: uvicorn_worker.UvicornWorker" in log
    assert "Application startup complete." in log  # our app's lifespan ran under uvicorn
    assert (deployment.app("hello-asgi").release(first) / "gunicorn.conf.py").is_file()


def test_uwsgi_serves_the_example_redeploys_and_rolls_back(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = deployment.project / "shipyard.toml"
    spec.write_text(_replace_once(spec.read_text(), r"^\[server\]$", '[server]\ntype = "uwsgi"'))

    first = _deploy_redeploy_rollback(
        deployment, capsys, "/version", "Hello from flaskr", deployment.set_greeting
    )
    status, body, release = deployment.get("/")
    assert status == 200 and "Hello from flaskr" in body and release == first

    app = deployment.app("flaskr")
    log = _web_log(deployment, capsys)
    sockets = [str(app.socket(slot)) for slot in ("blue", "green")]
    assert any(f"uwsgi socket 0 bound to UNIX address {s} " in log for s in sockets), log
    assert re.search(r"GET /version => generated \d+ bytes .*\(HTTP/1\.1 200\)", log)
    assert (app.release(first) / "uwsgi.ini").is_file()
    assert not (app.release(first) / "gunicorn.conf.py").exists()
