"""A login user that is not root: every host-side step goes through `sudo -n`.

The user and its sudoers entry are made for the test and removed after it (the test hosts
share this machine's /etc).
"""

from __future__ import annotations

import http.client
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import FleetFactory
from project import make_project

pytestmark = pytest.mark.slow

USER = "sydeploy"
SUDOERS = Path("/etc/sudoers.d/shipyard-test-sydeploy")


@pytest.fixture
def deploy_user() -> Iterator[str]:
    made = False
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", USER], check=True, timeout=30
        )
        made = True
    # a new account is locked ('!'), which sshd refuses even for keys; '*' is no password
    subprocess.run(["usermod", "--password", "*", USER], check=True, timeout=30)
    # passwordless sudo for the deploy user, as on a typical cloud image
    SUDOERS.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
    SUDOERS.chmod(0o440)
    try:
        yield USER
    finally:
        SUDOERS.unlink(missing_ok=True)
        if made:
            subprocess.run(["userdel", "--force", "--remove", USER], check=False, timeout=30)


def test_a_sudo_user_provisions_and_deploys(
    deploy_user: str, make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    # deploy_user first: its teardown runs after the fleet's, once no session uses the user
    fleet = make_fleet(web=1, lb=False)
    host = fleet.web[0]
    project = make_project(tmp_path, fleet, cache)
    spec = project.path / "shipyard.toml"
    spec.write_text(spec.read_text().replace('hosts = ["web1"]', f'hosts = ["{deploy_user}@web1"]'))
    project.ok("provision", "prod")
    done = project.ok("deploy", "--target", "prod", "--skip-tests")
    assert done.stdout.strip() == f"http://{host.address}:80/"
    conn = http.client.HTTPConnection(host.address, 80, timeout=10)
    try:
        conn.request("GET", "/version")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("X-Shipyard-Release")
    finally:
        conn.close()
    # the runtime is root's, made through sudo, not the login user's
    runtime = host.base_dir / ".shipyard"
    assert runtime.stat().st_uid == 0 and (runtime / "venv").stat().st_uid == 0
    # without sudo rights the error says so, and nothing changes
    SUDOERS.unlink()
    refused = project.cli("deploy", "--target", "prod", "--skip-tests")
    assert refused.returncode == 1 and "sudo" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
