"""init reads a Heroku-style Procfile: the web line, the other process types, release."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from shipyard.project import procfile
from shipyard.project.detect import detect
from shipyard.project.initfile import render_spec_toml
from shipyard.spec.model import parse_spec

FLASK_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
FASTAPI_APP = "from fastapi import FastAPI\n\napp = FastAPI()\n"


def _project(root: Path, procfile_text: str, files: dict[str, str]) -> Path:
    root.mkdir()
    (root / "Procfile").write_text(procfile_text)
    (root / "requirements.txt").write_text("flask\ngunicorn\n")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_lines_comments_and_blank_lines() -> None:
    text = "# processes\n\nweb: gunicorn app:app\nworker:python worker.py  \nbad line\n"
    assert procfile.parse_lines(text) == [
        ("web", "gunicorn app:app"),
        ("worker", "python worker.py"),
    ]


@pytest.mark.parametrize(
    ("line", "web"),
    [
        (
            "gunicorn myapp.wsgi:application --workers 3",
            procfile.Web("myapp.wsgi:application", "gunicorn", "wsgi", 3),
        ),
        ("gunicorn -w4 -b 0.0.0.0:$PORT app:app", procfile.Web("app:app", "gunicorn", "wsgi", 4)),
        (
            "gunicorn -k uvicorn.workers.UvicornWorker main:app",
            procfile.Web("main:app", "uvicorn", "asgi", 0),
        ),
        (
            "uvicorn app.main:app --host 0.0.0.0 --port $PORT",
            procfile.Web("app.main:app", "uvicorn", "asgi", 0),
        ),
        (
            "uvicorn app:create_app --factory --workers=2",
            procfile.Web("app:create_app()", "uvicorn", "asgi", 2),
        ),
        ("python -m gunicorn app:app", procfile.Web("app:app", "gunicorn", "wsgi", 0)),
        (
            "gunicorn app:make_app -k aiohttp.GunicornWebWorker -w 2",
            procfile.Web("app:make_app", "aiohttp", "aiohttp", 2),
        ),
        ("python app.py", procfile.Web()),
    ],
)
def test_the_web_line(line: str, web: procfile.Web) -> None:
    assert procfile.web_command(line) == web


def test_a_heroku_style_flask_app(tmp_path: Path) -> None:
    project = _project(
        tmp_path / "herokuapp",
        "web: gunicorn app:app --workers 3\nworker: python worker.py\n"
        "clock: python clock.py\nrelease: flask --app app db upgrade\n",
        {"app.py": FLASK_APP, "worker.py": "", "clock.py": ""},
    )
    found = detect(project)
    assert (found.entry, found.server, found.workers) == ("app:app", "gunicorn", 3)
    assert found.processes == {"worker": "python worker.py", "clock": "python clock.py"}
    assert (found.release, found.setup) == ("flask --app app db upgrade", "")
    assert "Procfile: worker: took as processes.worker" in found.notes
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), project / "shipyard.toml")
    assert spec.processes["clock"].command == "python clock.py"
    assert spec.server.workers == 3 and spec.release == "flask --app app db upgrade"


def test_a_release_line_that_creates_the_database_is_proposed_as_setup(tmp_path: Path) -> None:
    project = _project(
        tmp_path / "p",
        "web: gunicorn app:app\nrelease: flask --app app init-db\n",
        {"app.py": FLASK_APP},
    )
    found = detect(project)
    assert (found.setup, found.release) == ("flask --app app init-db", "")
    assert any("proposed as `setup`" in note for note in found.notes)


def test_a_web_line_that_runs_the_app_itself_is_explained_and_the_code_s_entry_used(
    tmp_path: Path,
) -> None:
    project = _project(tmp_path / "p", "web: python app.py\n", {"app.py": FASTAPI_APP})
    found = detect(project)
    assert (found.entry, found.server) == ("app:app", "uvicorn")
    assert any("`python app.py` cannot be used as is" in note for note in found.notes)
    text = render_spec_toml(found)
    assert "\n# [processes]\n" in text and "\n[processes]\n" not in text  # none to write


def test_an_asgi_app_served_by_uvicorn_from_a_package(tmp_path: Path) -> None:
    project = _project(
        tmp_path / "p",
        "web: uvicorn app.main:app --workers 2\n",
        {"app/__init__.py": "", "app/main.py": FASTAPI_APP, "app/other.py": FASTAPI_APP},
    )
    found = detect(project)
    assert (found.entry, found.kind, found.server, found.workers) == (
        "app.main:app",
        "asgi",
        "uvicorn",
        2,
    )
