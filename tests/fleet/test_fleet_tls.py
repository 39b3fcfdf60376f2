"""HTTPS on a fleet end to end: the certificate a user provides ends on the lb (and only
there), which serves it; plain HTTP to the lb is redirected; the web hosts behind it pass
the lb's scheme on, so the app sees X-Forwarded-Proto: https. With ACME, the lb obtains
the certificate from a real ACME server (pebble) and renews it itself."""

from __future__ import annotations

import http.client
import os
import stat
from pathlib import Path

import pytest
from netns import FleetFactory
from project import make_project

from pebblekit import pebble
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


def test_acme_on_the_lb_through_a_real_acme_server(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    """pebble runs on this machine, at the fleet's gateway: certbot on the lb reaches it
    there, and it validates the challenge on the lb's nginx (every name resolves to the lb)."""
    fleet = make_fleet(web=1, lb=True)
    lb = fleet.lb
    assert lb is not None
    project = make_project(tmp_path / "p", fleet, cache)
    with pebble(tmp_path, 80, api_host=fleet.gateway, answer=lb.address) as acme:
        spec = project.path / "shipyard.toml"
        spec.write_text(
            spec.read_text().replace('name = "flaskr"', f'name = "flaskr"\ndomains = ["{HOST}"]', 1)
            + f'\n[tls]\nmode = "acme"\nemail = "ops@shipyard.example"\n'
            f'directory = "{acme.directory}"\nca_bundle = "{acme.api_ca}"\n'
        )
        project.ok("provision", "prod")
        project.ok("deploy", "--target", "prod")
        root = acme.issuing_root(tmp_path)
        status, body, _ = https_get(443, HOST, "/version", root, address=lb.address)
        assert (status, body) == (200, "Hello from flaskr")
        cert, _, _ = served_certificate(443, HOST, root, address=lb.address)
        assert "Pebble" in cert.issuer.rfc4514_string()  # and verified against its root
    # the lb renews it by itself, and holds it: the web host has none
    programs = lb.base_dir / ".shipyard" / "programs"
    assert (programs / "flaskr.tls.conf").is_file()
    live = lb.base_dir / "flaskr" / "shared" / "tls" / "acme" / "live" / "flaskr"
    assert (live / "fullchain.pem").exists()
    (web,) = fleet.web
    assert not (web.base_dir / "flaskr" / "shared" / "tls" / "acme").exists()
