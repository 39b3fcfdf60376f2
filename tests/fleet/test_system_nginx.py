"""A host's own nginx (nginx = "system"): one server block per app in conf.d, routed by name.

The test host shares this machine's /etc/nginx and /run/nginx.pid (namespaces share the
filesystem), so one host runs the system nginx, inside its namespace, and the server block is
removed afterwards.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import FleetFactory
from project import make_project

from shipyard.host.layout import SYSTEM_NGINX_SITES

pytestmark = pytest.mark.slow

SITE = SYSTEM_NGINX_SITES / "shipyard-flaskr.conf"


def get(address: str, host: str, path: str = "/version") -> tuple[int, str, str | None]:
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(), response.getheader("X-Shipyard-Release")
    finally:
        conn.close()


@pytest.fixture
def clean_site() -> Iterator[None]:
    assert not SITE.exists(), f"{SITE} is left from elsewhere; remove it first"
    try:
        yield
    finally:
        SITE.unlink(missing_ok=True)


@pytest.mark.usefixtures("clean_site")
def test_system_nginx_serves_apps_by_name(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=1, lb=False)
    host = fleet.web[0]
    project = make_project(tmp_path, fleet, cache, nginx='"system"')
    spec = project.path / "shipyard.toml"
    without_domains = project.cli("deploy", "--target", "prod", "--skip-tests")
    assert without_domains.returncode != 0
    assert "routes to apps by name: set `domains`" in without_domains.stderr
    spec.write_text('domains = ["flaskr.test"]\n' + spec.read_text())
    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod", "--skip-tests")
    assert SITE.is_file() and "server_name flaskr.test;" in SITE.read_text()
    status, body, release = get(host.address, "flaskr.test")
    assert status == 200 and release and body.strip()
    # nginx itself is the system one: no nginx program under shipyard's supervisord
    assert not (host.base_dir / ".shipyard" / "nginx").exists()
    masters = [
        pid
        for pid in host.pids()
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: master")
    ]
    assert len(masters) == 1
    # another name is not this app's (the system's default server answers it)
    assert get(host.address, "other.test")[2] is None
    project.set_greeting("Hello from the system nginx")
    project.ok("deploy", "--target", "prod", "--skip-tests")
    second = get(host.address, "flaskr.test", "/")
    assert second[2] != release and "Hello from the system nginx" in second[1]
    project.ok("destroy", "--target", "prod", "--yes")
    assert not SITE.exists()
