"""End to end: projects as their frameworks' docs lay them out deploy with `shipyard init --yes`
and `shipyard deploy`, no edit between: init finds the entry, its kind and its server, and the
app answers through nginx."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

AIOHTTP_VERSION = "3.13.2"  # pinned below the newest: the release must run the project's pin

# aiohttp's "Server Quickstart": a module-level app, run by `python app.py` on a laptop.
AIOHTTP_FLAT = {
    "requirements.txt": f"aiohttp=={AIOHTTP_VERSION}\n",
    "app.py": """\
import aiohttp
from aiohttp import web


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=f"hello from aiohttp {aiohttp.__version__}")


app = web.Application()
app.add_routes([web.get("/", hello)])

if __name__ == "__main__":
    web.run_app(app)
""",
}

# Flask's "Application Factories" with a wsgi.py beside the package, as its deployment
# docs have gunicorn load it; no packaging metadata: the tree is deployed.
FLASK_WSGI = {
    "requirements.txt": "flask>=3,<4\n",
    "wsgi.py": "from myapp import create_app\n\napp = create_app()\n",
    "myapp/__init__.py": """\
from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)

    from . import views

    app.register_blueprint(views.bp)
    return app
""",
    "myapp/views.py": """\
from flask import Blueprint

bp = Blueprint("views", __name__)


@bp.get("/")
def index() -> str:
    return "hello from myapp, served through wsgi.py"
""",
}

PROJECTS = {
    "aiohttp-flat": (
        AIOHTTP_FLAT,
        "entry: app:app (aiohttp, aiohttp, served by aiohttp)",
        f"hello from aiohttp {AIOHTTP_VERSION}",
    ),
    "flask-wsgi-py": (
        FLASK_WSGI,
        "entry: wsgi:app (flask, wsgi, served by gunicorn)",
        "hello from myapp, served through wsgi.py",
    ),
}


def _shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.parametrize(
    ("files", "summary", "answer"),
    [pytest.param(*case, id=name) for name, case in PROJECTS.items()],
)
def test_init_then_deploy_serves_the_app_as_written(
    bare_deployment: Deployment, files: dict[str, str], summary: str, answer: str
) -> None:
    deployment = bare_deployment
    project = deployment.project
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    init = _shipyard("init", "--yes", str(project))
    assert init.returncode == 0, init.stderr
    assert summary in init.stderr
    spec = project / "shipyard.toml"
    # the only line added: a free port for this test, where a user keeps the default
    spec.write_text(f'listen = "127.0.0.1:{deployment.port}"\n' + spec.read_text())

    deploy = _shipyard("deploy", str(project), "--skip-tests")
    assert deploy.returncode == 0, deploy.stderr
    status, body, release = deployment.get("/")
    assert (status, body) == (200, answer) and release
