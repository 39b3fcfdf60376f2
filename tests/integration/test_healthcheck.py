"""The default health check on an app that has no `/` route, and on one whose `/` is broken.

The app is a Flask API as Flask's quickstart makes one, `app = Flask(__name__)` with one
route, packaged with flit like Flask's tutorial; its spec sets no `[healthcheck]` path.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

PYPROJECT = """\
[build-system]
requires = ["flit_core>=3.9,<4"]
build-backend = "flit_core.buildapi"

[project]
name = "hello-api"
version = "1.0.0"
description = "A JSON API with no / route."
requires-python = ">=3.11"
dependencies = ["flask>=3.0,<4"]
"""

SPEC = """\
name = "hello-api"
entry = "hello_api:app"
listen = "127.0.0.1:{port}"

[server]
workers = 1

[tests]
enabled = false
"""

APP = '''\
"""A JSON API: /api and nothing else."""

from flask import Flask

app = Flask(__name__)


@app.get("/api")
def api() -> dict[str, str]:
    return {"hello": "api"}
'''

BROKEN_INDEX = """

@app.get("/")
def index() -> str:
    raise RuntimeError("the index is broken on purpose")
"""


def test_an_api_with_no_index_passes_the_default_check_and_a_broken_index_fails_it(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = deployment.project
    (project / "hello_api").mkdir(parents=True)
    (project / "pyproject.toml").write_text(PYPROJECT)
    spec = project / "shipyard.toml"
    spec.write_text(SPEC.format(port=deployment.port))
    module = project / "hello_api" / "__init__.py"
    module.write_text(APP)

    code, out, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    status, body, release = deployment.get("/api")
    assert (status, json.loads(body)) == (200, {"hello": "api"}) and release
    # what the check was answered with, through nginx, by the new release
    assert deployment.get("/")[0::2] == (404, release)
    code, out, err = deployment.cli("status", str(project), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["healthy"] is True, out + err

    # now `/` answers 500: the app is broken, so the deploy fails and nothing is switched
    module.write_text(APP + BROKEN_INDEX)
    spec.write_text(spec.read_text() + "\n[healthcheck]\ntimeout = 3\n")
    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 1
    assert "failed its health check (GET / on " in err, err
    assert "HTTP 500 (healthy is below 500)" in err
    assert "the index is broken on purpose" in err  # the app's own output, under the error
    assert "Nothing was switched" in err and "Traceback" not in err.split("|")[0]
    assert deployment.get("/api")[0::2] == (200, release)
    assert deployment.get("/")[0::2] == (404, release)
