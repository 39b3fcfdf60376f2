"""End to end: an app whose `init-db` drops and recreates its tables, as the Flask tutorial's
does, deployed with it as the one-time `setup`: its data outlives redeploys and rollbacks."""

from __future__ import annotations

import http.client
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

# The Flask tutorial's layout (flask.palletsprojects.com/tutorial): a `flaskr` package with an
# application factory, db.py with its `init-db` command and schema.sql, packaged with flit.
PYPROJECT = """\
[project]
name = "flaskr"
version = "1.0.0"
description = "The Flask tutorial's database, with notes instead of a blog."
dependencies = ["flask>=3.0,<4"]

[build-system]
requires = ["flit_core>=3.9,<4"]
build-backend = "flit_core.buildapi"
"""

INIT = '''\
"""The tutorial's application factory."""

import os

from flask import Flask

VERSION = "one"


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        DATABASE=os.path.join(app.instance_path, "flaskr.sqlite"),
    )
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
    else:
        app.config.from_mapping(test_config)
    try:
        os.makedirs(app.instance_path)
    except OSError:
        pass

    @app.route("/hello")
    def hello():
        return f"Hello, World! {VERSION}"

    from . import db, notes

    db.init_app(app)
    app.register_blueprint(notes.bp)
    return app
'''

DB = '''\
"""The tutorial's db.py, as it is."""

import sqlite3

import click
from flask import current_app, g


def get_db():
    if "db" not in g:
        g.db = sqlite3.connect(
            current_app.config["DATABASE"], detect_types=sqlite3.PARSE_DECLTYPES
        )
        g.db.row_factory = sqlite3.Row
    return g.db


def close_db(e=None):
    db = g.pop("db", None)
    if db is not None:
        db.close()


def init_db():
    db = get_db()
    with current_app.open_resource("schema.sql") as f:
        db.executescript(f.read().decode("utf8"))


@click.command("init-db")
def init_db_command():
    """Clear the existing data and create new tables."""
    init_db()
    click.echo("Initialized the database.")


def init_app(app):
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
'''

SCHEMA = """\
DROP TABLE IF EXISTS note;

CREATE TABLE note (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  body TEXT NOT NULL
);
"""

NOTES = '''\
"""Notes kept in the database: listed at /, added with a POST to /notes."""

from flask import Blueprint, redirect, request, url_for

from flaskr.db import get_db

bp = Blueprint("notes", __name__)


@bp.get("/")
def index():
    rows = get_db().execute("SELECT body FROM note ORDER BY id").fetchall()
    return "notes: " + ", ".join(row["body"] for row in rows)


@bp.post("/notes")
def add():
    db = get_db()
    db.execute("INSERT INTO note (body) VALUES (?)", (request.form["body"],))
    db.commit()
    return redirect(url_for("notes.index"))
'''


def _tutorial(project: Path, schema: str) -> None:
    files = {
        "pyproject.toml": PYPROJECT,
        "flaskr/__init__.py": INIT,
        "flaskr/db.py": DB,
        "flaskr/notes.py": NOTES,
        "flaskr/schema.sql": schema,
    }
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)


def _post(deployment: Deployment, body: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=10)
    try:
        conn.request(
            "POST",
            "/notes",
            body=f"body={body}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def _set_version(project: Path, version: str) -> None:
    init = project / "flaskr" / "__init__.py"
    init.write_text(
        re.sub(r'^VERSION = ".*"$', f'VERSION = "{version}"', init.read_text(), flags=re.M)
    )


def test_an_init_db_that_drops_its_tables_runs_once_and_the_data_survives(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = deployment.project
    # a schema with a mistake: the first deploy's setup fails
    _tutorial(project, SCHEMA.replace("CREATE TABLE", "CREATE TABEL"))
    code, _, err = deployment.cli("init", "--yes", str(project), capsys=capsys)
    assert code == 0, err
    assert 'proposed setup = "flask --app flaskr init-db"' in err, err
    spec = project / "shipyard.toml"
    text = spec.read_text()
    assert re.search(r'^setup = "flask --app flaskr init-db"$', text, re.M), text
    assert re.search(r'^# release = ""$', text, re.M), text
    spec.write_text(
        f'listen = "127.0.0.1:{deployment.port}"\n' + text.replace("# workers = 0", "workers = 1")
    )
    app = deployment.app("flaskr")

    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 1 and "the setup command failed (flask --app flaskr init-db)" in err, err
    assert "syntax error" in err and "runs it again" in err
    assert not app.setup_file.exists()
    with pytest.raises(OSError):  # nothing was ever switched to
        deployment.get("/")

    (project / "flaskr" / "schema.sql").write_text(SCHEMA)
    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    assert "ran the setup command, once for this app here" in err
    record = json.loads(app.setup_file.read_text())
    assert record["how"] == "ran" and record["command"] == "flask --app flaskr init-db"
    assert deployment.get("/")[:2] == (200, "notes: ")
    assert _post(deployment, "kept") == 302
    assert _post(deployment, "also kept") == 302

    for version in ("two", "three"):  # a code change each time: new releases
        _set_version(project, version)
        code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
        assert code == 0, err
        assert deployment.get("/hello")[1] == f"Hello, World! {version}"
        assert deployment.get("/")[:2] == (200, "notes: kept, also kept")
        assert "setup" not in err
    code, _, err = deployment.cli("rollback", str(project), capsys=capsys)
    assert code == 0, err
    assert deployment.get("/hello")[1] == "Hello, World! two"
    assert deployment.get("/")[:2] == (200, "notes: kept, also kept")
    assert json.loads(app.setup_file.read_text()) == record
