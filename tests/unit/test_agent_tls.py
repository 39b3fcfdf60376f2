"""The agent's side of HTTPS on a fleet, on a fake host: the files a Tls request carries
become the app's certificate and key (0600), and the lb's site serves them; a web host
behind the lb renders no TLS and passes the lb's scheme on to the app."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from agentfakes import entries, fake_session, handle_with_files
from fakes import FakeHost
from hostkit import make_spec

from shipyard.host import protocol as p
from shipyard.host import render, tls
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary

APP = "flaskr"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
SETTINGS = tls.TlsSettings(
    mode="files", listen="0.0.0.0:443", redirect=True, hsts_max_age=0, domains=["a.example"]
)


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    fake = FakeHost(HostLayout(tmp_path / "base"))
    fake.layout.runtime.mkdir(parents=True)
    return fake


def _files(tmp_path: Path) -> list[object]:
    source = tmp_path / "sent"
    source.mkdir(parents=True)
    (source / "certificate").write_bytes(CERT)
    (source / "key").write_bytes(KEY)
    return entries(source)  # type: ignore[return-value]


def test_the_lb_keeps_the_files_0600_and_its_site_serves_https(
    host: FakeHost, tmp_path: Path
) -> None:
    session = fake_session(host)
    request = p.Tls(app=APP, settings=SETTINGS)
    reply = handle_with_files(session, request, _files(tmp_path))  # type: ignore[arg-type]
    assert reply == p.TlsReply(changed=True)
    app = host.layout.app(APP)
    paths = tls.TlsPaths(app)
    assert paths.certificate.read_bytes() == CERT and paths.key.read_bytes() == KEY
    assert stat.S_IMODE(os.stat(paths.key).st_mode) == 0o600
    assert not list(host.layout.runtime.glob(".tls.*"))  # nothing left where it arrived
    lb = p.Lb(
        app=APP,
        release="r1",
        spec=make_spec(domains=["a.example"]),
        backends=[("10.0.0.1:8000", False)],
        static={},
    )
    session.handle(lb)
    site = app.site_file.read_text()
    assert f"ssl_certificate {paths.certificate};" in site
    assert "listen 0.0.0.0:443 ssl http2;" in site
    assert "return 301 https://$host$request_uri;" in site
    # the same again changes nothing
    again = handle_with_files(session, request, _files(tmp_path / "2"))  # type: ignore[arg-type]
    assert again == p.TlsReply(changed=False)


def test_a_web_host_behind_the_lb_renders_no_tls_and_passes_the_lb_s_scheme(
    host: FakeHost,
) -> None:
    session = fake_session(host)
    behind = SETTINGS.model_copy(update={"behind_lb": True})
    session.handle(p.Tls(app=APP, settings=behind))
    app = host.layout.app(APP)
    assert tls.site(app) is None and tls.behind_lb(app)
    spec = make_spec(domains=["a.example"])
    nginx = NginxBinary("/usr/sbin/nginx", None, None)
    text = render.site_conf(
        spec, app, "r1", "blue", {}, "0.0.0.0:80", nginx, tls.site(app), tls.behind_lb(app)
    )
    assert "ssl_certificate" not in text
    assert "map $http_x_forwarded_proto $shipyard_flaskr_proto {" in text
    assert "proxy_set_header X-Forwarded-Proto $shipyard_flaskr_proto;" in text
    session.handle(p.Tls(app=APP, settings=None))  # HTTPS off again
    assert not tls.behind_lb(app)


def test_taking_the_app_off_the_lb_stops_its_renewal_loop(host: FakeHost) -> None:
    session = fake_session(host)
    app = host.layout.app(APP)
    app.tls_program_file.parent.mkdir(parents=True, exist_ok=True)
    app.tls_program_file.write_text("[program:flaskr-tls-renew]\n")
    session.handle(p.LbRemove(app=APP))
    assert not app.tls_program_file.exists()
