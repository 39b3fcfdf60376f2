"""init finds the app in projects laid out as their frameworks' docs make them: its entry,
framework, kind and server, read from the code (never run), and writes a spec that takes them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from shipyard.errors import SpecError
from shipyard.project.detect import detect
from shipyard.project.initfile import init_summary, render_spec_toml
from shipyard.spec.model import parse_spec


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


FLASK_FACTORY = """\
from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)

    @app.get("/")
    def index():
        return "hello"

    return app
"""

LAYOUTS: dict[str, tuple[dict[str, str], tuple[str, str, str, str]]] = {
    "a flat Flask app": (
        {
            "requirements.txt": "flask>=3,<4\n",
            "app.py": "from flask import Flask\n\napp = Flask(__name__)\n\n\n"
            '@app.get("/")\ndef index():\n    return "hi"\n',
        },
        ("app:app", "flask", "wsgi", "gunicorn"),
    ),
    "wsgi.py calling the package's factory": (
        {
            "requirements.txt": "flask\n",
            "wsgi.py": "from myapp import create_app\n\napp = create_app()\n",
            "myapp/__init__.py": FLASK_FACTORY,
        },
        ("wsgi:app", "flask", "wsgi", "gunicorn"),
    ),
    "wsgi.py calling the factory with arguments, as `application`": (
        {
            "wsgi.py": "import os\n\nfrom myapp import create_app\n\n"
            'application = create_app(os.environ.get("CONFIG"))\n',
            "myapp/__init__.py": FLASK_FACTORY,
        },
        ("wsgi:application", "flask", "wsgi", "gunicorn"),
    ),
    "main.py importing the app from a package's module": (
        {
            "main.py": "from pkg.web import application\n",
            "pkg/__init__.py": "",
            "pkg/web.py": "from flask import Flask\n\napplication = Flask(__name__)\n",
        },
        ("main:application", "flask", "wsgi", "gunicorn"),
    ),
    "asgi.py importing a FastAPI app, renamed": (
        {
            "asgi.py": "from service.api import api as app\n",
            "service/__init__.py": "",
            "service/api.py": "from fastapi import FastAPI\n\napi = FastAPI()\n",
        },
        ("asgi:app", "fastapi", "asgi", "uvicorn"),
    ),
    "a package's factory imported relatively by its __init__": (
        {
            "server.py": "import shop\n\napp = shop.create_app()\n",
            "shop/__init__.py": "from .factory import create_app\n",
            "shop/factory.py": "from quart import Quart\n\n\ndef create_app():\n"
            "    return Quart(__name__)\n",
        },
        ("server:app", "quart", "asgi", "uvicorn"),
    ),
    "a Flask app wrapped in ProxyFix": (
        {
            "app.py": "from flask import Flask\nfrom werkzeug.middleware.proxy_fix import "
            "ProxyFix\n\napp = ProxyFix(Flask(__name__), x_for=1)\n",
        },
        ("app:app", "flask", "wsgi", "gunicorn"),
    ),
    "ProxyFix set on app.wsgi_app (no entry of its own)": (
        {
            "web.py": "from flask import Flask\nfrom werkzeug.middleware.proxy_fix import "
            "ProxyFix\n\napp = Flask(__name__)\napp.wsgi_app = ProxyFix(app.wsgi_app)\n",
        },
        ("web:app", "flask", "wsgi", "gunicorn"),
    ),
    "a python-socketio ASGIApp": (
        {
            "app.py": "import socketio\n\nsio = socketio.AsyncServer(async_mode='asgi')\n"
            "app = socketio.ASGIApp(sio)\n",
        },
        ("app:app", "socketio", "asgi", "uvicorn"),
    ),
    "a python-socketio ASGIApp over FastAPI": (
        {
            "main.py": "import socketio\nfrom fastapi import FastAPI\n\nfastapi_app = FastAPI()\n"
            "sio = socketio.AsyncServer(async_mode='asgi')\n"
            "app = socketio.ASGIApp(sio, other_asgi_app=fastapi_app)\n",
        },
        ("main:app", "fastapi", "asgi", "uvicorn"),
    ),
    "a python-socketio WSGIApp over Flask": (
        {
            "app.py": "import socketio\nfrom flask import Flask\n\nsio = socketio.Server()\n"
            "flask_app = Flask(__name__)\napp = socketio.WSGIApp(sio, flask_app)\n",
        },
        ("app:app", "flask", "wsgi", "gunicorn"),
    ),
    "a Quart app under Sentry's ASGI middleware": (
        {
            "app.py": "from quart import Quart\n"
            "from sentry_sdk.integrations.asgi import SentryAsgiMiddleware\n\n"
            "app = Quart(__name__)\napp = SentryAsgiMiddleware(app)\n",
        },
        ("app:app", "quart", "asgi", "uvicorn"),
    ),
    "a Flask app served over ASGI by asgiref's WsgiToAsgi": (
        {
            "app.py": "from asgiref.wsgi import WsgiToAsgi\nfrom flask import Flask\n\n"
            "flask_app = Flask(__name__)\napp = WsgiToAsgi(flask_app)\n",
        },
        ("app:app", "flask", "asgi", "uvicorn"),
    ),
    "a Flask app mounted in Starlette's WSGIMiddleware": (
        {
            "app.py": "from flask import Flask\n"
            "from starlette.middleware.wsgi import WSGIMiddleware\n\n"
            "app = WSGIMiddleware(Flask(__name__))\n",
        },
        ("app:app", "flask", "asgi", "uvicorn"),
    ),
    "a Litestar app": (
        {
            "requirements.txt": "litestar\n",
            "app.py": "from litestar import Litestar, get\n\n\n"
            '@get("/")\nasync def index() -> str:\n    return "hi"\n\n\n'
            "app = Litestar(route_handlers=[index])\n",
        },
        ("app:app", "litestar", "asgi", "uvicorn"),
    ),
    "an aiohttp app": (
        {
            "requirements.txt": "aiohttp==3.10.11\n",
            "app.py": "from aiohttp import web\n\n\nasync def hello(request):\n"
            '    return web.Response(text="hi")\n\n\napp = web.Application()\n'
            'app.add_routes([web.get("/", hello)])\n\n'
            'if __name__ == "__main__":\n    web.run_app(app)\n',
        },
        ("app:app", "aiohttp", "aiohttp", "aiohttp"),
    ),
    "an aiohttp app made through aiohttp.web": (
        {"server.py": "import aiohttp.web\n\napp = aiohttp.web.Application()\n"},
        ("server:app", "aiohttp", "aiohttp", "aiohttp"),
    ),
    "an aiohttp async factory": (
        {
            "app.py": "from aiohttp import web\n\n\nasync def make_app():\n"
            "    app = web.Application()\n    return app\n\n\n"
            'if __name__ == "__main__":\n    web.run_app(make_app())\n',
        },
        ("app:make_app()", "aiohttp", "aiohttp", "aiohttp"),
    ),
    "an aiohttp plain factory in a package": (
        {
            "chat/__init__.py": "from aiohttp.web import Application\n\n\n"
            "def create_app() -> Application:\n    return Application()\n",
        },
        ("chat:create_app()", "aiohttp", "aiohttp", "aiohttp"),
    ),
    "a factory importing its framework late": (
        {
            "svc/__init__.py": "",
            "svc/asgi.py": "def create_app():\n    from litestar import Litestar\n\n"
            "    return Litestar(route_handlers=[])\n",
        },
        ("svc.asgi:create_app()", "litestar", "asgi", "uvicorn"),
    ),
    "two aiohttp factories, as aiohttp's chat demo has them": (
        {
            "chat/__init__.py": "",
            "chat/main.py": "from aiohttp import web\n\n\nasync def init_app():\n"
            "    app = web.Application()\n    return app\n\n\nasync def get_app():\n"
            "    app = await init_app()\n    return app\n\n\n"
            "def main():\n    web.run_app(init_app())\n",
        },
        ("chat.main:init_app()", "aiohttp", "aiohttp", "aiohttp"),
    ),
    "a factory making the app with a helper the scan cannot follow": (
        {
            "api/__init__.py": "from fastapi import FastAPI\nfrom .setup import configured\n\n\n"
            "def create_app():\n    return configured(FastAPI)\n",
        },
        ("api:create_app()", "fastapi", "asgi", "uvicorn"),
    ),
    "a Flask subclass of the project's own": (
        {
            "site/__init__.py": "import flask\n\n\nclass Site(flask.Flask):\n"
            "    pass\n\n\napp = Site(__name__)\n",
        },
        ("site:app", "flask", "wsgi", "gunicorn"),
    ),
    "a Quart app": (
        {"app.py": "from quart import Quart\n\napp = Quart(__name__)\n"},
        ("app:app", "quart", "asgi", "uvicorn"),
    ),
    "a Starlette app": (
        {
            "app.py": "from starlette.applications import Starlette\n"
            "from starlette.routing import Route\n\napp = Starlette(routes=[])\n",
        },
        ("app:app", "starlette", "asgi", "uvicorn"),
    ),
    "a Falcon ASGI app": (
        {"app.py": "import falcon.asgi\n\napp = falcon.asgi.App()\n"},
        ("app:app", "falcon", "asgi", "uvicorn"),
    ),
    "a Falcon WSGI app": (
        {"app.py": "import falcon\n\napplication = falcon.App()\n"},
        ("app:application", "falcon", "wsgi", "gunicorn"),
    ),
    "an app from a helper the scan cannot follow, in a Flask module": (
        {"site.py": "from flask import Flask\nfrom helpers import build\n\napp = build(Flask)\n"},
        ("site:app", "flask", "wsgi", "gunicorn"),
    ),
}


@pytest.mark.parametrize(
    ("files", "expected"), [pytest.param(*case, id=name) for name, case in LAYOUTS.items()]
)
def test_the_entry_framework_kind_and_server_of_each_layout(
    tmp_path: Path, files: dict[str, str], expected: tuple[str, str, str, str]
) -> None:
    found = detect(_write(tmp_path / "project", files))
    assert (found.entry, found.framework, found.kind, found.server) == expected
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), tmp_path / "shipyard.toml")
    assert (spec.entry, spec.server.type.value) == (expected[0], expected[3])
    assert spec.server.type.serves == expected[2]
    if expected[2] != "aiohttp":
        assert spec.kind.value == expected[2]


def test_the_summary_says_which_entry_and_why(tmp_path: Path) -> None:
    files, _ = LAYOUTS["wsgi.py calling the package's factory"]
    found = detect(_write(tmp_path / "project", files))
    summary = init_summary(found)
    assert summary[:2] == [
        "entry: wsgi:app (flask, wsgi, served by gunicorn): create_app() from myapp returns "
        "flask.Flask(...); chosen: wsgi.py is the project's WSGI module",
        "entry: other candidates: myapp:create_app()",
    ]
    # the app is made in the package: its static files and commands are looked for there
    (tmp_path / "project" / "myapp" / "static").mkdir()
    assert detect(tmp_path / "project").static == {"/static": "myapp/static"}


def test_an_aiohttp_spec_leaves_kind_unset(tmp_path: Path) -> None:
    files, _ = LAYOUTS["an aiohttp async factory"]
    found = detect(_write(tmp_path / "project", files))
    text = render_spec_toml(found)
    assert '\n# kind = "wsgi"\n' in text and '\ntype = "aiohttp"\n' in text
    assert init_summary(found)[0] == (
        "entry: app:make_app() (aiohttp, aiohttp, served by aiohttp): make_app() returns "
        "aiohttp.web.Application(...); chosen: a factory in a module (the only candidate)"
    )


def test_a_package_factory_wins_over_a_script_that_calls_it(tmp_path: Path) -> None:
    """The Flask Mega-Tutorial's layout: microblog.py makes the app for `flask shell`."""
    project = _write(
        tmp_path / "microblog",
        {
            "microblog.py": "import sqlalchemy as sa\nfrom app import create_app, db\n\n"
            "app = create_app()\n\n\n@app.shell_context_processor\ndef ctx():\n"
            "    return {'sa': sa, 'db': db}\n",
            "app/__init__.py": "from flask import Flask\nfrom flask_sqlalchemy import "
            "SQLAlchemy\n\ndb = SQLAlchemy()\n\n\ndef create_app(config_class=object):\n"
            "    app = Flask(__name__)\n    db.init_app(app)\n    return app\n",
            "app/models.py": "from app import db\n",
        },
    )
    found = detect(project)
    assert (found.entry, found.alternatives) == ("app:create_app()", ["microblog:app"])
    assert found.chosen == "a factory in a package"


@pytest.mark.parametrize(
    "source",
    [
        # a module using the app is no entry: only the module that makes it, or an entry
        # module (wsgi.py, app.py...) that imports it
        "from shop import app\n\n\n@app.get('/x')\ndef x():\n    return 'x'\n",
        # a task queue's app in a Flask project is no web app
        "from celery import Celery\nfrom flask import current_app\n\napp = Celery('tasks')\n",
        # a function named like a factory that returns something else
        "from flask import g\nfrom client import Client\n\n\ndef get_api():\n    return Client()\n",
    ],
)
def test_modules_that_only_use_an_app_are_no_candidates(tmp_path: Path, source: str) -> None:
    project = _write(
        tmp_path / "p",
        {
            "shop/__init__.py": "from flask import Flask\n\napp = Flask(__name__)\n",
            "shop/views.py": source,
        },
    )
    found = detect(project)
    assert (found.entry, found.alternatives) == ("shop:app", [])


def test_a_factory_that_needs_arguments_is_no_entry(tmp_path: Path) -> None:
    """aiohttp's `python -m aiohttp.web` takes `init_func(argv)`; no server calls it so."""
    _write(
        tmp_path,
        {
            "app.py": "from aiohttp import web\n\n\ndef init_func(argv):\n"
            "    return web.Application()\n"
        },
    )
    with pytest.raises(SpecError, match="found no web app"):
        detect(tmp_path)


def test_channels_routes_django_over_asgi(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "chat",
        {
            "manage.py": 'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", '
            '"mysite.settings")\n',
            "mysite/__init__.py": "",
            "mysite/settings.py": 'INSTALLED_APPS = ["daphne", "channels"]\n'
            'ASGI_APPLICATION = "mysite.asgi.application"\n',
            "mysite/wsgi.py": "from django.core.wsgi import get_wsgi_application\n\n"
            "application = get_wsgi_application()\n",
            "mysite/asgi.py": "from channels.routing import ProtocolTypeRouter, URLRouter\n"
            "from django.core.asgi import get_asgi_application\n\n"
            "django_asgi_app = get_asgi_application()\n\n"
            'application = ProtocolTypeRouter({"http": django_asgi_app, '
            '"websocket": URLRouter([])})\n',
        },
    )
    found = detect(project)
    assert (found.entry, found.framework, found.kind, found.server) == (
        "mysite.asgi:application",
        "django-asgi",
        "asgi",
        "uvicorn",
    )


def test_a_procfile_naming_an_aiohttp_factory_as_gunicorn_takes_it(tmp_path: Path) -> None:
    files, _ = LAYOUTS["an aiohttp async factory"]
    project = _write(
        tmp_path / "p",
        {
            **files,
            "Procfile": "web: gunicorn app:make_app --bind :$PORT "
            "--worker-class aiohttp.GunicornWebWorker\n",
        },
    )
    found = detect(project)
    assert (found.entry, found.framework, found.kind, found.server) == (
        "app:make_app()",
        "aiohttp",
        "aiohttp",
        "aiohttp",
    )
    assert found.chosen == "the Procfile's web line names it (the only candidate)"
