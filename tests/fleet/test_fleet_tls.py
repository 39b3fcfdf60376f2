"""HTTPS on a fleet end to end: the certificate a user provides ends on the lb (and only
there), which serves it; plain HTTP to the lb is redirected; the web hosts behind it pass
the lb's scheme on, so the app sees X-Forwarded-Proto: https."""

from __future__ import annotations

import http.client
import os
import stat
from pathlib import Path

import pytest
from netns import FleetFactory
from project import make_project

from tlskit import TestCA, https_get, served_certificate

pytestmark = pytest.mark.slow

HOST = "app.fleet.test"
PROTO_ROUTE = """

@bp.get("/proto")
def proto() -> Response:
    return Response(request.headers.get("X-Forwarded-Proto", "-"), mimetype="text/plain")
"""


def test_the_lb_ends_https_with_the_certificate_and_the_app_hears_https(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=1, lb=True)
    project = make_project(tmp_path, fleet, cache)
    ca = TestCA(tmp_path)
    issued = ca.issue([HOST])
    views = project.path / "flaskr" / "views.py"
    views.write_text(views.read_text() + PROTO_ROUTE)
    spec = project.path / "shipyard.toml"
    spec.write_text(
        spec.read_text().replace('name = "flaskr"', f'name = "flaskr"\ndomains = ["{HOST}"]', 1)
        + f'\n[tls]\nmode = "files"\ncertificate = "{issued.certificate}"\n'
        f'key = "{issued.key}"\n'
    )
    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod")
    lb, (web,) = fleet.lb, fleet.web
    assert lb is not None

    status, body, _ = https_get(443, HOST, "/version", ca.pem, address=lb.address)
    assert (status, body) == (200, "Hello from flaskr")
    assert https_get(443, HOST, "/proto", ca.pem, address=lb.address)[1] == "https"
    cert, alpn, _ = served_certificate(443, HOST, ca.pem, ["h2", "http/1.1"], address=lb.address)
    assert cert.issuer == ca.cert.subject and alpn == "h2"

    conn = http.client.HTTPConnection(lb.address, 80, timeout=10)
    conn.request("GET", "/version", headers={"Host": HOST})
    response = conn.getresponse()
    assert (response.status, response.getheader("Location")) == (
        301,
        f"https://{HOST}/version",
    )
    conn.close()

    key = lb.base_dir / "flaskr" / "shared" / "tls" / "privkey.pem"
    assert key.read_bytes() == issued.key.read_bytes()
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert not (web.base_dir / "flaskr" / "shared" / "tls" / "privkey.pem").exists()
