"""A source-tree app (no packaging) on an ssh host: received file by file, run from its tree
as the app user, who cannot write there, with its data kept in shared/data."""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path

import pytest
from netns import FleetFactory
from project import Project

pytestmark = pytest.mark.slow

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


@app.get("/visits")
def visits() -> str:
    db = sqlite3.connect("db.sqlite3")
    with db:
        db.execute("create table if not exists visits (n integer)")
        db.execute("insert into visits values (1)")
    (count,) = db.execute("select count(*) from visits").fetchone()
    db.close()
    return str(count)


@app.get("/instance")
def instance() -> str:
    Path(app.instance_path).mkdir(exist_ok=True)
    (Path(app.instance_path) / "note").write_text("kept")
    return (Path(app.instance_path) / "note").read_text()


@app.get("/worker")
def worker() -> tuple[str, int]:
    path = Path("uploads") / "worker.txt"
    return (path.read_text(), 200) if path.exists() else ("not yet", 404)
""",
    "helpers.py": 'def greeting() -> str:\n    return "from the tree"\n',
    "templates/index.html": "<p>{{ greeting }}</p>\n",
    "worker.py": """\
import os
import time
from pathlib import Path

Path("uploads", "worker.txt").write_text(os.environ["SHIPYARD_RELEASE"])
while True:
    time.sleep(3600)
""",
}


def _get(address: str, path: str) -> tuple[int, str, str | None]:
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(), response.getheader("X-Shipyard-Release")
    finally:
        conn.close()


def test_a_flat_app_runs_from_its_tree_as_the_app_user(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=1, lb=False)
    host = fleet.web[0]
    path = tmp_path / "app"
    for name, text in FLAT_APP.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    (path / "shipyard.toml").write_text(
        'name = "flat"\nentry = "app:app"\npersistent = ["uploads"]\n'
        'persistent_files = ["db.sqlite3"]\n\n[tests]\nenabled = false\n\n'
        '[processes]\nworker = "python worker.py"\n\n'
        f'[targets.prod]\nhosts = ["{host.name}"]\nbase_dir = "{fleet.root}/{{host}}"\n'
        f'ssh_config = "{fleet.ssh_config}"\n'
    )
    project = Project(
        path, fleet, {**os.environ, "SHIPYARD_CACHE": str(cache), "HOME": str(tmp_path)}
    )
    project.ok("provision", "prod")
    deployed = project.ok("deploy", "--target", "prod")
    assert "the source tree (6 files)" in deployed.stderr
    status, body, release = _get(host.address, "/")
    assert (status, body) == (200, "<p>from the tree</p>") and release
    assert _get(host.address, "/visits")[:2] == (200, "1")
    assert _get(host.address, "/visits")[:2] == (200, "2")
    assert _get(host.address, "/instance")[:2] == (200, "kept")  # the app user may write it
    deadline = time.monotonic() + 20
    while _get(host.address, "/worker")[:2] != (200, release):
        assert time.monotonic() < deadline, _get(host.address, "/worker")
        time.sleep(0.2)
    tree = host.base_dir / "flat" / "releases" / release / "src"
    ran = project.ok(
        "run", "--target", "prod", "--", "python", "-c", "import os; print(os.getcwd())"
    )
    assert ran.stdout.strip() == str(tree)
    # compiled at install: the app user could not have written its bytecode there
    assert list((tree / "__pycache__").glob("helpers.cpython-*.pyc"))
    assert (host.base_dir / "flat" / "shared" / "data" / "db.sqlite3").is_file()

    (path / "helpers.py").write_text('def greeting() -> str:\n    return "second"\n')
    project.ok("deploy", "--target", "prod")
    status, body, second = _get(host.address, "/")
    assert (status, body) == (200, "<p>second</p>") and second != release
    assert _get(host.address, "/visits")[:2] == (200, "3")
