"""End to end: hidden files and editor backups in a static dir never answer through nginx."""

from __future__ import annotations

import http.client
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.host.state import load_state

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

HIDDEN = {
    ".env": "SECRET_KEY=leaked\n",
    ".git/config": "[core]\n",
    ".htpasswd": "admin:$apr1$leaked\n",
    "app.js~": "old js\n",
    "#app.js#": "emacs autosave\n",
    ".app.js.swp": "vim swap\n",
    "js/app.js.bak": "backup\n",
}


def _plant(directory: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def _git(project: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=project,
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("repo", ["git", "plain"])
def test_hidden_files_and_backups_answer_404_while_the_rest_is_served(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], repo: str
) -> None:
    static = deployment.project / "flaskr" / "static"
    _plant(static, HIDDEN)
    if repo == "git":  # some tracked (forced past any ignore), some not
        _git(deployment.project, "init", "-q")
        _git(deployment.project, "add", ".")
        _git(deployment.project, "add", "-f", "flaskr/static/.htpasswd", "flaskr/static/app.js~")
        _git(deployment.project, "commit", "-q", "-m", "app")
    code, _, err = deployment.cli("deploy", str(deployment.project), "--skip-tests", capsys=capsys)
    assert code == 0, err

    assert _get(deployment.port, "/static/style.css")[0] == 200
    for name in HIDDEN:
        status, body = _get(deployment.port, "/static/" + name.replace("#", "%23"))
        assert status == 404, (name, status)
        assert HIDDEN[name] not in body

    # left out of the release itself, so not merely refused by nginx
    app = deployment.app("flaskr")
    live = load_state(app).live
    assert live is not None
    served = app.release(live) / "static" / "0-static"
    assert (served / "style.css").is_file()
    assert not any((served / name).exists() for name in HIDDEN)

    # files that land in the release later: nginx refuses the hidden ones itself
    _plant(served, {**HIDDEN, "later.css": "p {}\n"})
    assert _get(deployment.port, "/static/later.css") == (200, "p {}\n")
    for name in HIDDEN:
        assert _get(deployment.port, "/static/" + name.replace("#", "%23"))[0] == 404, name

    # the app's own dot paths still reach the app (Flask's 404, not nginx's)
    status, body = _get(deployment.port, "/.well-known/security.txt")
    assert status == 404 and "nginx" not in body
