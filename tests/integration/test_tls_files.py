"""HTTPS with a certificate the user provides, from a CA this test makes: served by
shipyard's nginx, verified by a client that trusts only that CA; plain HTTP redirected;
HTTP/2 offered; the app told the request came over HTTPS; the key never in the artifact
nor in any output."""

from __future__ import annotations

import http.client
import os
import socket
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tlskit import TestCA, https_get, served_certificate

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

HOST = "app.shipyard.test"
PROTO_ROUTE = """

@bp.get("/proto")
def proto() -> Response:
    return Response(request.headers.get("X-Forwarded-Proto", "-"), mimetype="text/plain")
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_provided_certificate_is_served_and_http_moves_to_https(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    ca = TestCA(deployment.project.parent)
    issued = ca.issue([HOST])
    # the key inside the project: it must stay out of the artifact all the same
    certs = deployment.project / "certs"
    certs.mkdir()
    (certs / "fullchain.pem").write_bytes(issued.certificate.read_bytes())
    (certs / "privkey.pem").write_bytes(issued.key.read_bytes())
    secret_line = issued.key.read_text().splitlines()[1]
    views = deployment.project / "flaskr" / "views.py"
    views.write_text(views.read_text() + PROTO_ROUTE)
    https_port = _free_port()
    spec = deployment.project / "shipyard.toml"
    spec.write_text(
        spec.read_text().replace('name = "flaskr"', f'name = "flaskr"\ndomains = ["{HOST}"]', 1)
        + f"""
[tls]
mode = "files"
certificate = "certs/fullchain.pem"
key = "certs/privkey.pem"
listen = "127.0.0.1:{https_port}"
hsts = 600
"""
    )
    code, out, err = deployment.cli("deploy", "--dry-run", str(deployment.project), capsys=capsys)
    assert code == 0, out + err
    assert "privkey.pem (0600, ***)" in out and secret_line not in out + err
    code, out, err = deployment.cli("deploy", str(deployment.project), capsys=capsys)
    assert code == 0, out + err
    assert secret_line not in out + err

    status, body, headers = https_get(https_port, HOST, "/version", ca.pem)
    assert (status, body) == (200, "Hello from flaskr")
    assert headers["Strict-Transport-Security"] == "max-age=600"
    assert https_get(https_port, HOST, "/proto", ca.pem)[1] == "https"

    cert, alpn, version = served_certificate(https_port, HOST, ca.pem, ["h2", "http/1.1"])
    assert cert.issuer == ca.cert.subject
    assert alpn == "h2"
    assert version in ("TLSv1.3", "TLSv1.2")

    conn = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=10)
    conn.request("GET", "/version?x=1", headers={"Host": HOST})
    response = conn.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{HOST}:{https_port}/version?x=1"
    conn.close()

    app = deployment.app("flaskr")
    for name in ("fullchain.pem", "privkey.pem"):
        mode = stat.S_IMODE(os.stat(app.tls / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    artifacts = Path(os.environ["SHIPYARD_CACHE"]) / "artifacts"
    assert not _holds(artifacts, secret_line)
    assert not _holds(app.releases, secret_line)


def _holds(root: Path, text: str) -> bool:
    needle = text.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if needle in data:
                return True
            if path.suffix in (".whl", ".tar", ".gz") and tarfile.is_tarfile(path):
                with tarfile.open(path) as archive:
                    for member in archive.getmembers():
                        got = archive.extractfile(member) if member.isfile() else None
                        if got is not None and needle in got.read():
                            return True
    return False
