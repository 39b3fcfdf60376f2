"""End to end: the app's socket, data and logs are closed to other local users, and as root
nginx's workers do not run as root."""

from __future__ import annotations

import http.client
import os
import pwd
import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.host.layout import HostLayout
from shipyard.host.state import load_state

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

ROOT = os.geteuid() == 0
# Connects to a unix socket; exits 0 if it could, 13 if refused for lack of permission.
CONNECT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_UNIX)\n"
    "try:\n    s.connect(sys.argv[1])\n"
    "except PermissionError:\n    sys.exit(13)\n"
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _nginx_workers(host: HostLayout) -> list[int]:
    master = int(host.nginx_pidfile.read_text().strip())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _uids(pid: int) -> list[int]:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    return [int(part) for part in line.split()[1:]]  # real, effective, saved, filesystem


@pytest.mark.parametrize(
    "app_user", ["", *(["nobody"] if ROOT else [])], ids=lambda u: u or "shipyard's user"
)
def test_socket_data_and_logs_are_closed_and_nginx_workers_are_not_root(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], app_user: str
) -> None:
    deployment.base.chmod(0o755)  # mkdtemp's 0700 would keep any worker user out
    spec = deployment.project / "shipyard.toml"
    if app_user:
        spec.write_text(spec.read_text() + f'\n[targets.local]\napp_user = "{app_user}"\n')
    code, _, err = deployment.cli("deploy", str(deployment.project), "--skip-tests", capsys=capsys)
    assert code == 0, err
    assert deployment.get("/health")[0] == 200
    assert deployment.get("/static/style.css")[0] == 200
    # a body too big for nginx's buffers goes through its temp dir, which its workers write
    conn = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=10)
    conn.request("POST", "/health", body=b"x" * 1_000_000)
    assert conn.getresponse().status < 500
    conn.close()

    app = deployment.app("flaskr")
    state = load_state(app)
    assert state.slot is not None
    sock = app.socket(state.slot)
    owner = pwd.getpwnam(app_user).pw_uid if app_user else os.geteuid()
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert _mode(sock) == (0o660 if ROOT else 0o600)
    assert sock.stat().st_uid == owner
    assert _mode(app.shared) == 0o750 and _mode(app.run) == 0o750
    for private in (app.data, app.var, app.logs):
        assert _mode(private) == 0o700, private
    logs = list(app.logs.iterdir())
    assert logs and all(_mode(log) & 0o007 == 0 for log in logs), [
        (p.name, oct(_mode(p))) for p in logs
    ]
    for secret in app.shared.glob("env.*"):
        assert _mode(secret) == 0o600

    if not ROOT:
        return
    workers = _nginx_workers(HostLayout(deployment.base))
    assert workers
    for pid in workers:
        assert 0 not in _uids(pid), pid
    # another local user reaches neither the socket nor the data
    # (the system's python: the checkout's venv may sit where that user cannot go)
    intruder = ["runuser", "-u", "daemon", "--", "/usr/bin/python3", "-c", CONNECT, str(sock)]
    tried = subprocess.run(intruder, check=False, capture_output=True, text=True)
    assert tried.returncode == 13, tried.stderr
    listing = ["runuser", "-u", "daemon", "--", "ls", str(app.data)]
    assert subprocess.run(listing, check=False, capture_output=True).returncode != 0
    # the release is root's: the app user cannot change its code
    release = app.release(state.live or "")
    assert release.stat().st_uid == 0 and not _mode(release) & 0o022
