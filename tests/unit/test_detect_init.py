"""Detection reads a project without running it; init writes a spec that validates."""

from __future__ import annotations

import shutil
import sqlite3
import tomllib
from pathlib import Path

import pytest

from shipyard.errors import SpecError, UsageError
from shipyard.project.detect import detect, normalise_name
from shipyard.project.initfile import init_summary, render_spec_toml, toml_value, write_spec
from shipyard.spec.model import parse_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask-factory"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_example_app(tmp_path: Path) -> None:
    project = tmp_path / "example"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("shipyard.toml", ".pytest_cache")
    )
    found = detect(project)
    assert found.name == "flaskr"
    assert found.entry == "flaskr:create_app()"
    assert (found.framework, found.kind, found.server) == ("flask", "wsgi", "gunicorn")
    assert found.static == {"/static": "flaskr/static"}
    # its init-db is one-time work: setup, never release
    assert (found.setup, found.release) == ("flask --app flaskr init-db", "")
    assert "flaskr/db.py defines `flask init-db`" in found.why["setup"]
    assert found.tests_enabled and found.test_requirements == ["pytest>=8"]
    assert found.secrets == ["FLASKR_SECRET_KEY"]


def test_src_layout_module_level_app(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "My Service",
        {
            "src/svc/__init__.py": "",
            "src/svc/web.py": "from flask import Flask\napp = Flask(__name__)\n",
        },
    )
    found = detect(project)
    assert found.entry == "svc.web:app"
    assert found.name == "my-service"
    assert not found.tests_enabled and "no tests found" in found.notes[0]


def test_fastapi_is_asgi_on_uvicorn(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "api",
        {
            "pyproject.toml": '[project]\nname = "Api_Server"\ndependencies = ["fastapi"]\n',
            "api/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
            "tests/test_api.py": "",
        },
    )
    found = detect(project)
    assert (found.entry, found.kind, found.server) == ("api.main:app", "asgi", "uvicorn")
    assert found.name == "api-server"


def test_django_wsgi(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "site",
        {
            "manage.py": "",
            "mysite/__init__.py": "",
            "mysite/wsgi.py": (
                "from django.core.wsgi import get_wsgi_application\n"
                "application = get_wsgi_application()\n"
            ),
        },
    )
    assert detect(project).entry == "mysite.wsgi:application"


def test_the_factory_in_a_package_wins(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "p",
        {
            "pkg/__init__.py": (
                "from flask import Flask\ndef create_app():\n    return Flask(__name__)\n"
            ),
            "pkg/other.py": "from flask import Flask\napp = Flask(__name__)\n",
        },
    )
    found = detect(project)
    assert found.entry == "pkg:create_app()"
    assert found.alternatives == ["pkg.other:app"]


def test_no_app_is_a_clear_error(tmp_path: Path) -> None:
    _write(tmp_path, {"lib/util.py": "def f():\n    return 1\n"})
    with pytest.raises(SpecError, match="found no web app") as err:
        detect(tmp_path)
    # what was looked for, the new layouts among it
    for looked_for in ("Flask(...)", "Litestar(...)", "web.Application(...)", "socketio.ASGIApp"):
        assert looked_for in str(err.value)
    assert "a wsgi.py, asgi.py, app.py, main.py or server.py that imports" in str(err.value)
    assert "Django's wsgi.py/asgi.py; a Procfile's `web:` line" in str(err.value)
    # and the spec that fixes it
    name = normalise_name(tmp_path.name)
    assert f'name = "{name}" and entry = "package.module:app"' in (err.value.hint or "")


@pytest.mark.parametrize(("raw", "name"), [("Flask_App", "flask-app"), ("9lives", "app-9lives")])
def test_names_are_normalised(raw: str, name: str) -> None:
    assert normalise_name(raw) == name


def test_the_written_spec_validates_with_the_detected_values(tmp_path: Path) -> None:
    project = tmp_path / "example"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("shipyard.toml", ".pytest_cache")
    )
    text = render_spec_toml(detect(project))
    assert "# Entry point:" in text  # comments come from the spec's field descriptions
    spec = parse_spec(tomllib.loads(text), project / "shipyard.toml")
    assert spec.entry == "flaskr:create_app()"
    assert spec.static == {"/static": "flaskr/static"}
    assert (spec.setup, spec.release) == ("flask --app flaskr init-db", "")
    assert "# proposed: flaskr/db.py defines `flask init-db`" in text
    assert text.index("# proposed:") < text.index("\nsetup = ")
    assert '\n# release = ""\n' in text
    assert spec.tests.requirements == ["pytest>=8"]
    assert spec.secrets == {"FLASKR_SECRET_KEY": "generate"}


@pytest.mark.parametrize("value", ['quote " and \\ backslash', "ünïcode", "tab\there"])
def test_toml_strings_round_trip(value: str) -> None:
    assert tomllib.loads(f"v = {toml_value(value)}")["v"] == value


def test_write_spec_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    write_spec(tmp_path, "a = 1\n", force=False)
    with pytest.raises(UsageError, match="--force"):
        write_spec(tmp_path, "a = 2\n", force=False)
    write_spec(tmp_path, "a = 2\n", force=True)
    assert (tmp_path / "shipyard.toml").read_text() == "a = 2\n"


def test_write_spec_refuses_when_pyproject_holds_the_spec(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.shipyard]\nname = "x"\n')
    with pytest.raises(SpecError, match=r"\[tool\.shipyard\]"):
        write_spec(tmp_path, "", force=True)


# --- the setup and release commands, by their nature ------------------------------------------

TUTORIAL_INIT = """\
from flask import Flask


def create_app(test_config=None):
    app = Flask(__name__, instance_relative_config=True)
    from . import db
    db.init_app(app)
    return app
"""

TUTORIAL_DB = """\
import sqlite3

import click
from flask import current_app, g


def init_db():
    db = g.db
    with current_app.open_resource("schema.sql") as f:
        db.executescript(f.read().decode("utf8"))


@click.command("init-db")
def init_db_command():
    \"\"\"Clear the existing data and create new tables.\"\"\"
    init_db()
    click.echo("Initialized the database.")


def init_app(app):
    app.cli.add_command(init_db_command)
"""


def test_the_flask_tutorials_init_db_is_a_setup_command(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "flask-tutorial",
        {
            "flaskr/__init__.py": TUTORIAL_INIT,
            "flaskr/db.py": TUTORIAL_DB,
            "flaskr/schema.sql": "DROP TABLE IF EXISTS user;\nCREATE TABLE user (id INTEGER);\n",
        },
    )
    found = detect(project)
    assert (found.setup, found.release) == ("flask --app flaskr init-db", "")
    assert "drop and recreate the tables" in found.why["setup"]
    assert any(n.startswith('proposed setup = "flask --app flaskr init-db": ') for n in found.notes)


@pytest.mark.parametrize(
    ("source", "command"),
    [
        ('@app.cli.command("initdb")\ndef initdb():\n    pass\n', "initdb"),
        ("@app.cli.command()\ndef create_all():\n    pass\n", "create-all"),
        ("@app.cli.command()\ndef create_db_command():\n    pass\n", "create-db"),
        (
            "@click.command()\ndef init_database():\n    pass\n\n"
            'app.cli.add_command(init_database, "setup-db")\n',
            "setup-db",
        ),
        (
            '@command(name="init_db")\ndef whatever():\n    pass\n\n'
            "app.cli.add_command(whatever)\n",
            "init_db",
        ),
    ],
)
def test_init_db_style_flask_commands_are_setup(tmp_path: Path, source: str, command: str) -> None:
    project = _write(
        tmp_path / "p",
        {
            "web/app.py": "import click\nfrom click import command\nfrom flask import Flask\n"
            "app = Flask(__name__)\n\n" + source,
        },
    )
    found = detect(project)
    assert (found.setup, found.release) == (f"flask --app web.app {command}", "")


@pytest.mark.parametrize(
    "source",
    [
        # a blueprint's commands are `flask <blueprint> ...`, another group's under its name
        'bp = Blueprint("admin", __name__)\n\n@bp.cli.command("init-db")\ndef init():\n    pass\n',
        '@click.group()\ndef db():\n    pass\n\n@db.command("init")\ndef init():\n    pass\n',
        # added to another group: `flask admin init-db`
        '@click.command("init-db")\ndef init_db():\n    pass\n\n'
        "@click.group()\ndef admin():\n    pass\n\nadmin.add_command(init_db)\n",
        # defined, never added to the app's commands
        '@click.command("init-db")\ndef init_db():\n    pass\n',
        # not a database's setup
        '@app.cli.command("seed")\ndef seed():\n    pass\n',
    ],
)
def test_other_commands_are_not_proposed(tmp_path: Path, source: str) -> None:
    project = _write(
        tmp_path / "p",
        {
            "web/app.py": "import click\nfrom flask import Blueprint, Flask\n"
            "app = Flask(__name__)\n\n" + source,
        },
    )
    found = detect(project)
    assert (found.setup, found.release, found.why) == ("", "", {})


def test_flask_migrate_is_a_release_command_and_keeps_init_db_out_of_setup(
    tmp_path: Path,
) -> None:
    project = _write(
        tmp_path / "p",
        {
            "app/__init__.py": "from flask import Flask\nfrom flask_migrate import Migrate\n\n"
            "def create_app():\n    app = Flask(__name__)\n    Migrate(app)\n"
            '    @app.cli.command("init-db")\n    def init_db():\n        pass\n'
            "    return app\n",
            "migrations/alembic.ini": "",
        },
    )
    found = detect(project)
    assert (found.setup, found.release) == ("", "flask --app app db upgrade")
    assert "app/__init__.py uses Flask-Migrate" in found.why["release"]
    assert "safe to repeat" in found.why["release"]
    assert any("`flask init-db` (app/__init__.py) is not proposed" in n for n in found.notes)


def test_alembic_is_a_release_command_for_any_framework(tmp_path: Path) -> None:
    project = _write(
        tmp_path / "api",
        {
            "alembic.ini": "[alembic]\nscript_location = migrations\n",
            "api/main.py": "from fastapi import FastAPI\napp = FastAPI()\n",
        },
    )
    found = detect(project)
    assert (found.setup, found.release) == ("", "alembic upgrade head")
    assert found.why["release"].startswith("alembic.ini: ")


FLAT_FLASK = {
    "requirements.txt": "flask\n",
    "app.py": "from flask import Flask\nimport helpers\napp = Flask(__name__)\n",
    "helpers.py": "def greeting():\n    return 'hi'\n",
    "templates/index.html": "{{ greeting }}",
    "uploads/.gitkeep": "",
    "Thumbs.db": "not a database",
}


def test_a_flat_app_deploys_as_its_tree_with_its_data_kept(tmp_path: Path) -> None:
    project = _write(tmp_path / "site", FLAT_FLASK)
    sqlite3.connect(project / "notes.db").execute("create table t (x)").connection.commit()
    found = detect(project)
    assert found.entry == "app:app"
    assert found.build.is_tree
    assert found.build.reason.startswith("no packaging metadata")
    assert found.persistent == ["uploads"]
    assert found.persistent_files == ["notes.db"]  # a SQLite file by its header, not its name
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), project / "shipyard.toml")
    assert spec.persistent == ["uploads"]
    assert spec.persistent_files == ["notes.db"]
    assert spec.build.mode == "auto"
    assert init_summary(found)[:4] == [
        "entry: app:app (flask, wsgi, served by gunicorn): flask.Flask(...); chosen: made at "
        "module level (the only candidate)",
        f"build: {found.build.reason}",
        "persistent: uploads/, notes.db (beside the code; kept in shared/data across releases, "
        "never shipped)",
        # Flask's instance folder, beside the code in a tree, needs no entry
        "persistent: instance/ (Flask's instance folder, without configuration)",
    ]


def test_a_django_site_migrates_on_release_and_keeps_its_sqlite_database(
    tmp_path: Path,
) -> None:
    project = _write(
        tmp_path / "site",
        {
            "manage.py": "",
            "setup.cfg": "[flake8]\nmax-line-length = 100\n",
            "media/a.png": "",
            "staticfiles/site.css": "",
            "mysite/__init__.py": "",
            "mysite/settings.py": (
                "DATABASES = {'default': {'NAME': BASE_DIR / 'db.sqlite3'}}\n"
                "STATIC_URL = 'assets/'\nSTATIC_ROOT = BASE_DIR / 'staticfiles'\n"
            ),
            "mysite/wsgi.py": (
                "from django.core.wsgi import get_wsgi_application\n"
                "application = get_wsgi_application()\n"
            ),
        },
    )
    found = detect(project)
    assert (found.setup, found.release) == ("", "python manage.py migrate --noinput")
    assert "Django" in found.why["release"]
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), project / "shipyard.toml")
    assert (spec.setup, spec.release) == ("", "python manage.py migrate --noinput")
    assert found.build.is_tree
    # media/ is MEDIA_ROOT's, kept in shared/media by the settings wrapper, not a link
    assert (found.persistent, found.persistent_files) == ([], ["db.sqlite3"])
    assert found.release == "python manage.py migrate --noinput"
    # without django.contrib.staticfiles nothing is collected at build time: the files
    # collected by hand are served as they are
    assert found.static == {"/assets": "staticfiles"}


def test_a_packaged_app_is_a_wheel_and_persists_nothing_beside_its_code(tmp_path: Path) -> None:
    project = tmp_path / "example"
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns("shipyard.toml", ".pytest_cache")
    )
    (project / "uploads").mkdir()
    found = detect(project)
    assert not found.build.is_tree
    assert found.build.reason == "pyproject.toml has [build-system]: deploying it as a wheel"
    assert (found.persistent, found.persistent_files) == ([], [])
    assert init_summary(found)[1] == f"build: {found.build.reason}"
    assert "# Flask's instance folder persists without configuration." in render_spec_toml(found)
