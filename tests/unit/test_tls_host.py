"""HTTPS on the host's side, without servers: what a deploy keeps (files 0600, settings),
what the site then serves, where health checks go, certbot's commands, and the deploying
side's reading of the user's files (never shown, never in the artifact)."""

from __future__ import annotations

import datetime
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from shipyard.build.artifact import tls_files_inside
from shipyard.errors import SpecError
from shipyard.host import tls
from shipyard.host.layout import HostLayout
from shipyard.project.tlsfiles import tls_upload
from shipyard.spec.model import Spec

KEY_PEM = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"


def _cert(ocsp: str | None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ocsp:
        access = x509.AccessDescription(
            AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _spec(tls: dict[str, object], **more: object) -> Spec:
    return Spec.model_validate(
        {"name": "web", "entry": "web:app", "domains": ["app.example.com"], "tls": tls, **more}
    )


def test_ocsp_stapling_only_for_a_leaf_that_names_a_responder() -> None:
    assert tls.names_ocsp_responder(_cert("http://ocsp.example.com"))
    assert not tls.names_ocsp_responder(_cert(None))
    # the leaf decides, not a CA after it in the chain
    assert not tls.names_ocsp_responder(_cert(None) + _cert("http://ocsp.example.com"))
    assert not tls.names_ocsp_responder(b"not a pem")


def test_files_mode_keeps_the_certificate_and_key_0600_and_the_site_serves_them(
    tmp_path: Path,
) -> None:
    app = HostLayout(tmp_path).app("web")
    spec = _spec({"mode": "files", "certificate": "c.pem", "key": "k.pem", "hsts": True})
    assert spec.tls is not None
    settings = tls.settings_of(spec.tls, spec.domains, "127.0.0.1:8080")
    cert = _cert("http://ocsp.example.com")
    tls.apply(app, settings, certificate=cert, key=KEY_PEM)
    paths = tls.TlsPaths(app)
    for path in (paths.certificate, paths.key, paths.settings):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    site = tls.site(app)
    assert site is not None and site.ready and site.redirect_now
    assert (site.certificate, site.key) == (paths.certificate, paths.key)
    assert site.listen == "127.0.0.1:8443" and site.hsts_max_age == 63072000
    assert site.stapling and site.webroot is None
    assert tls.check_url(app, "127.0.0.1:8080", "/health") == "https://127.0.0.1:8443/health"

    acme = settings.model_copy(update={"mode": "acme", "email": "o@example.com"})
    tls.apply(app, acme)  # to ACME: the user's key is not kept
    assert not paths.key.exists() and not paths.certificate.exists()
    tls.apply(app, settings, certificate=cert, key=KEY_PEM)
    tls.apply(app, None)  # [tls] removed: plain HTTP again
    assert tls.site(app) is None
    assert not paths.key.exists() and not paths.certificate.exists()
    assert tls.check_url(app, "0.0.0.0:8080", "/") == "http://127.0.0.1:8080/"


def test_acme_before_its_certificate_serves_the_challenge_over_plain_http(
    tmp_path: Path,
) -> None:
    app = HostLayout(tmp_path).app("web")
    spec = _spec({"mode": "acme", "email": "ops@example.com", "listen": "0.0.0.0:443"})
    assert spec.tls is not None
    tls.apply(app, tls.settings_of(spec.tls, spec.domains, "0.0.0.0:80"))
    site = tls.site(app)
    assert site is not None and not site.ready and not site.redirect_now
    assert site.webroot == tls.TlsPaths(app).webroot and site.webroot.is_dir()
    assert tls.check_url(app, "0.0.0.0:80", "/") == "http://127.0.0.1:80/"
    live = tls.TlsPaths(app).live_certificate
    live.parent.mkdir(parents=True)
    live.write_bytes(_cert(None))
    tls.TlsPaths(app).live_key.write_bytes(KEY_PEM)
    site = tls.site(app)
    assert site is not None and site.ready and site.certificate == live
    assert tls.check_url(app, "0.0.0.0:80", "/") == "https://127.0.0.1:443/"


def test_certbot_s_commands_keep_everything_under_the_app_and_never_skip_verification(
    tmp_path: Path,
) -> None:
    app = HostLayout(tmp_path).app("web")
    settings = tls.TlsSettings(
        mode="acme",
        listen="0.0.0.0:443",
        redirect=True,
        hsts_max_age=0,
        domains=["a.example.com", "b.example.com"],
        email="ops@example.com",
        directory="https://acme.test/dir",
        ca_bundle=True,
    )
    argv = tls.obtain_args("/usr/bin/certbot", app, settings)
    assert argv[:2] == ("/usr/bin/certbot", "certonly")
    joined = " ".join(argv)
    for part in (
        f"--config-dir {app.tls}/acme",
        f"--work-dir {app.tls}/acme-work",
        f"--logs-dir {app.tls}/acme-logs",
        f"--webroot --webroot-path {app.tls}/webroot",
        "--cert-name web",
        "--server https://acme.test/dir",
        "-d a.example.com -d b.example.com",
        "--non-interactive",
    ):
        assert part in joined, part
    assert "--no-verify-ssl" not in argv
    assert tls.certbot_env(app, settings)["REQUESTS_CA_BUNDLE"] == str(tls.TlsPaths(app).ca_bundle)
    renew = tls.renew_args("certbot", app, force=True)
    assert renew[1] == "renew" and "--force-renewal" in renew and "--cert-name" in renew
    assert "--force-renewal" not in tls.renew_args("certbot", app, force=False)


def test_the_user_s_files_are_read_checked_and_the_key_never_shown(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "c.pem").write_bytes(_cert(None))
    (tmp_path / "certs" / "k.pem").write_bytes(KEY_PEM)
    spec = _spec({"mode": "files", "certificate": "certs/c.pem", "key": "certs/k.pem"})
    upload = tls_upload(tmp_path, spec, "local", "127.0.0.1:8080")
    assert upload.key == KEY_PEM and upload.certificate is not None
    assert b"c2VjcmV0" not in repr(upload).encode() and "***" in repr(upload)
    assert tls_files_inside(tmp_path, spec) == ["certs/c.pem", "certs/k.pem"]

    wrong = _spec({"mode": "files", "certificate": "certs/k.pem", "key": "certs/k.pem"})
    with pytest.raises(SpecError, match=r"tls.certificate: .* does not hold a certificate"):
        tls_upload(tmp_path, wrong, "local", "127.0.0.1:8080")
    missing = _spec({"mode": "files", "certificate": "certs/c.pem", "key": "nope.pem"})
    with pytest.raises(SpecError, match=r"tls.key: cannot read"):
        tls_upload(tmp_path, missing, "local", "127.0.0.1:8080")
    outside = _spec({"mode": "files", "certificate": "/etc/ssl/c.pem", "key": "../k.pem"})
    assert tls_files_inside(tmp_path, outside) == []
