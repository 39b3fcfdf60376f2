"""End to end: an app with no packaging metadata deploys as its source tree and runs in place;
a packaged one still goes the wheel path; neither deploy writes into the user's tree."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

# A flat app as people write them: a requirements.txt, two top-level modules, templates beside
# them, files opened by relative path, a worker script and a SQLite file, no packaging at all.
FLAT_APP = {
    "requirements.txt": "flask>=3,<4\n",
    "app.py": """\
import sqlite3
from pathlib import Path

from flask import Flask, render_template

import helpers

app = Flask(__name__)


@app.get("/")
def index() -> str:
    return render_template("index.html", greeting=helpers.greeting())


@app.get("/motd")
def motd() -> str:
    return Path("motd.txt").read_text()  # relative to the working directory


@app.get("/worker")
def worker() -> tuple[str, int]:
    path = Path("uploads") / "worker.txt"
    return (path.read_text(), 200) if path.exists() else ("not yet", 404)


@app.get("/instance")
def instance() -> str:
    Path(app.instance_path).mkdir(exist_ok=True)  # as Flask's tutorial makes it
    path = Path(app.instance_path) / "count"
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return str(count)


@app.get("/visits")
def visits() -> str:
    db = sqlite3.connect("db.sqlite3")
    with db:
        db.execute("create table if not exists visits (n integer)")
        db.execute("insert into visits values (1)")
    (count,) = db.execute("select count(*) from visits").fetchone()
    db.close()
    return str(count)
""",
    "helpers.py": 'GREETING = "hello from helpers"\n\n\ndef greeting() -> str:\n'
    "    return GREETING\n",
    "templates/index.html": "<p>{{ greeting }}</p>\n",
    "motd.txt": "read by relative path\n",
    "worker.py": '''\
"""Run as a process: writes where the app reads it, relative to its working directory."""
import os
import time
from pathlib import Path

import helpers

release = os.environ["SHIPYARD_RELEASE"]
Path("uploads", "worker.txt").write_text(f"{helpers.greeting()} in {release}")
while True:
    time.sleep(3600)
''',
    "uploads/.gitkeep": "",
    "tests/test_helpers.py": "import helpers\n\n\ndef test_greeting() -> None:\n"
    "    assert helpers.greeting()\n",
    ".gitignore": "db.sqlite3\n*.log\n__pycache__/\n",
}

# A Django site laid out as `django-admin startproject` makes it (trimmed), with one app: no
# packaging, flake8's settings in setup.cfg, templates beside BASE_DIR, SQLite in BASE_DIR.
DJANGO_SITE = {
    "requirements.txt": "django>=4.2,<6\n",
    "setup.cfg": "[flake8]\nmax-line-length = 100\n",
    "manage.py": """\
#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
""",
    "mysite/__init__.py": "",
    "mysite/settings.py": """\
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "notes"]
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
    }
]
WSGI_APPLICATION = "mysite.wsgi.application"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
""",
    "mysite/urls.py": """\
from django.urls import path

from notes import views

urlpatterns = [path("", views.index), path("notes", views.notes), path("css", views.css)]
""",
    "mysite/wsgi.py": """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
""",
    "notes/__init__.py": "",
    "notes/models.py": """\
from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=100)
""",
    "notes/migrations/__init__.py": "",
    "notes/migrations/0001_initial.py": """\
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("text", models.CharField(max_length=100)),
            ],
        )
    ]
""",
    "notes/views.py": """\
from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render

from notes.models import Note

HEADING = "notes"


def index(request):
    return render(request, "index.html", {"heading": HEADING})


def notes(request):
    Note.objects.create(text="seen")
    return HttpResponse(str(Note.objects.count()), content_type="text/plain")


def css(request):  # as a manifest storage reads STATIC_ROOT/staticfiles.json at run time
    return HttpResponse((settings.STATIC_ROOT / "site.css").read_text())
""",
    "templates/index.html": "<h1>{{ heading }}</h1>\n",
    # collectstatic's output, ignored by git as it usually is
    "staticfiles/site.css": "h1 { color: teal }\n",
    ".gitignore": "staticfiles/\ndb.sqlite3\n",
}

PACKAGED_APP = {
    "pyproject.toml": """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "hello-pkg"
version = "1.2.0"
dependencies = ["flask>=3,<4"]

[tool.setuptools]
packages = ["hello_pkg"]
""",
    "hello_pkg/__init__.py": 'from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.get("/")\n'
    'def index() -> str:\n    return "packaged"\n',
}


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
        timeout=60,
    )


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry under `root`, .git included: mtime, size and content digest; a directory's
    mtime changes when anything is made in it, even if it is removed again."""
    seen = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory, name)
            info = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
            seen[str(path.relative_to(root))] = (info.st_mtime_ns, info.st_size, digest)
    return seen


def _set_listen(spec: Path, port: int) -> None:
    spec.write_text(f'listen = "127.0.0.1:{port}"\n' + spec.read_text())


def _wait_for_body(deployment: Deployment, path: str, body: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (got := deployment.get(path))[:2] != (200, body):
        assert time.monotonic() < deadline, f"GET {path}: {got}"
        time.sleep(0.1)


def _run(project: Path, *command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "run", str(project), "--", *command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_flat_app_deploys_as_its_tree_and_runs_in_place(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = deployment.project
    _write(project, FLAT_APP)
    _git(project, "init", "-q")
    _git(project, "add", ".")
    _git(project, "commit", "-q", "-m", "a flat app")
    # the developer's own database, ignored by git: data, never shipped
    dev_db = sqlite3.connect(project / "db.sqlite3")
    with dev_db:
        dev_db.execute("create table visits (n integer)")
        dev_db.executemany("insert into visits values (?)", [(1,)] * 5)
    dev_db.close()

    code, out, err = deployment.cli("init", "--yes", str(project), capsys=capsys)
    assert code == 0 and out.strip() == f"wrote {(project / 'shipyard.toml').resolve()}", err
    assert "build: no packaging metadata" in err and "deploying the source tree" in err
    assert "persistent: uploads/, db.sqlite3 (" in err
    assert "persistent: instance/ (Flask's instance folder, without configuration)" in err
    spec = project / "shipyard.toml"
    _set_listen(spec, deployment.port)
    spec.write_text(spec.read_text() + '\n[processes]\nworker = "python worker.py"\n')
    before = _snapshot(project)

    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    assert "the source tree (" in err and "passed" in err  # the test gate ran, from the tree
    status, body, release = deployment.get("/")
    assert (status, body) == (200, "<p>hello from helpers</p>") and release
    assert deployment.get("/motd")[:2] == (200, "read by relative path\n")
    _wait_for_body(deployment, "/worker", f"hello from helpers in {release}")
    assert deployment.get("/visits")[:2] == (200, "1")  # a fresh database: the dev's stayed
    assert deployment.get("/visits")[:2] == (200, "2")
    assert deployment.get("/instance")[:2] == (200, "1")
    app = deployment.app("app")
    assert (app.var / "app-instance" / "count").read_text() == "1"
    tree = app.release(release) / "src"
    assert _run(project, "python", "-c", "import os, helpers; print(os.getcwd())") == str(tree)
    assert (tree / "db.sqlite3").is_symlink() and (app.data / "db.sqlite3").is_file()
    manifest = json.loads((app.release(release) / "manifest.json").read_text())
    assert manifest["app_wheel"] is None
    assert "helpers.py" in manifest["tree"] and "uploads/.gitkeep" not in manifest["tree"]
    assert "db.sqlite3" not in manifest["tree"]
    # the deploy left the user's tree exactly as it was: no build/, no egg-info, no caches
    assert _snapshot(project) == before

    code, _out, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    assert f"artifact {release}" in err and "(unchanged, reused)" in err
    assert deployment.get("/")[2] == release

    helpers = project / "helpers.py"
    helpers.write_text(helpers.read_text().replace("hello from helpers", "second"))
    code, _, err = deployment.cli("deploy", str(project), "--skip-tests", capsys=capsys)
    assert code == 0, err
    status, body, second = deployment.get("/")
    assert (status, body) == (200, "<p>second</p>") and second != release
    assert deployment.get("/visits")[:2] == (200, "3")  # the database outlived its release
    assert deployment.get("/instance")[:2] == (200, "2")  # and so did the instance folder
    _wait_for_body(deployment, "/worker", f"second in {second}")


def test_a_django_site_runs_manage_py_in_its_tree_and_keeps_its_database(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = deployment.project
    _write(project, DJANGO_SITE)
    code, _, err = deployment.cli("init", "--yes", str(project), capsys=capsys)
    assert code == 0, err
    assert "build: no packaging metadata" in err and "persistent: db.sqlite3 (" in err
    spec = project / "shipyard.toml"
    generated = spec.read_text()
    assert 'entry = "mysite.wsgi:application"' in generated
    assert 'release = "python manage.py migrate --noinput"' in generated
    assert 'DJANGO_SECRET_KEY = "generate"' in generated
    # no django.contrib.staticfiles, so nothing to collect: the files collected by hand are
    # served as they are, under the settings wrapper all the same
    assert '"/static" = "staticfiles"' in generated and 'settings = "mysite.settings"' in generated
    _set_listen(spec, deployment.port)
    before = _snapshot(project)

    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    status, body, release = deployment.get("/")
    assert (status, body) == (200, "<h1>notes</h1>\n") and release
    # the release command made the tables in shared/data, through the tree's link
    assert deployment.get("/notes")[:2] == (200, "1")
    assert deployment.get("/notes")[:2] == (200, "2")
    css = "h1 { color: teal }\n"
    assert deployment.get("/static/site.css")[:2] == (200, css)  # nginx serves it
    assert deployment.get("/css")[:2] == (200, css)  # and the app finds it in its tree
    app = deployment.app("app")
    assert (app.data / "db.sqlite3").is_file()
    count = "from notes.models import Note; print(Note.objects.count())"
    # (Django 5.2's shell says first what it imported for you)
    assert _run(project, "python", "manage.py", "shell", "-c", count).splitlines()[-1] == "2"
    assert not (project / "db.sqlite3").exists() and _snapshot(project) == before

    views = project / "notes" / "views.py"
    views.write_text(views.read_text().replace('HEADING = "notes"', 'HEADING = "second"'))
    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    status, body, second = deployment.get("/")
    assert (status, body) == (200, "<h1>second</h1>\n") and second != release
    assert deployment.get("/notes")[:2] == (200, "3")


def test_a_packaged_app_is_still_a_wheel_and_leaves_no_build_output(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = deployment.project
    _write(project, PACKAGED_APP)
    code, _out, err = deployment.cli("init", "--yes", str(project), capsys=capsys)
    assert code == 0, err
    assert "build: pyproject.toml has [build-system]: deploying it as a wheel" in err
    _set_listen(project / "shipyard.toml", deployment.port)
    before = _snapshot(project)

    code, _, err = deployment.cli("deploy", str(project), "--skip-tests", capsys=capsys)
    assert code == 0, err
    assert "the wheel hello_pkg-1.2.0-py3-none-any.whl" in err
    status, body, release = deployment.get("/")
    assert (status, body) == (200, "packaged") and release
    release_dir = deployment.app("hello-pkg").release(release)
    assert (release_dir / "app" / "hello_pkg-1.2.0-py3-none-any.whl").is_file()
    assert not (release_dir / "src").exists()
    # setuptools built from a copy: no build/ or hello_pkg.egg-info/ here
    assert _snapshot(project) == before
    assert not (project / "build").exists() and not list(project.glob("*.egg-info"))
