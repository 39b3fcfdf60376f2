"""HTTPS on a host: the settings a deploy chose, the certificate nginx serves, and ACME's
certificates through certbot (obtained with HTTP-01 answered by nginx, renewed on the host).

certbot rather than our own client on the `acme` library: it is the ACME client the
library was written for, and it already does the account, the key, the lineage kept with
atomic `live/` links, and the 30-days-left renewal rule; what shipyard adds is the webroot
nginx serves, the reload, and the schedule.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shipyard.errors import HostError
from shipyard.host.layout import AppLayout
from shipyard.host.local import write_atomic
from shipyard.host.render import TlsSite
from shipyard.spec.model import TlsSpec

CERTBOT_TIMEOUT = 600
# The OID of id-ad-ocsp (1.3.6.1.5.5.7.48.1) as DER: a certificate that names an OCSP
# responder holds it in its Authority Information Access, and nowhere else.
_OCSP_OID = bytes.fromhex("06082b06010505073001")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)


class TlsSettings(BaseModel):
    """What a deploy decided about HTTPS, kept on the host for every later render (switch,
    rollback, recovery, renewal)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["files", "acme"]
    listen: str
    plain_listen: str = ""  # the plain HTTP address beside it (a renewal knows no target)
    redirect: bool
    hsts_max_age: int
    domains: list[str]
    email: str = ""
    directory: str = ""
    ca_bundle: bool = False  # an ACME directory's CA was sent with it
    # a web host of a fleet whose lb serves HTTPS: no TLS here, and the app is told the
    # scheme the lb saw (its X-Forwarded-Proto)
    behind_lb: bool = False


def settings_of(tls: TlsSpec, domains: list[str], plain_listen: str) -> TlsSettings:
    return TlsSettings(
        mode=tls.mode,
        listen=tls.https_listen(plain_listen),
        plain_listen=plain_listen,
        redirect=tls.redirect,
        hsts_max_age=tls.hsts_max_age,
        domains=list(domains),
        email=tls.email,
        directory=tls.directory if tls.mode == "acme" else "",
        ca_bundle=bool(tls.ca_bundle),
    )


@dataclass(frozen=True)
class TlsPaths:
    """Where an app's HTTPS files are on the host, all under shared/tls."""

    app: AppLayout

    @property
    def root(self) -> Path:
        return self.app.tls

    @property
    def settings(self) -> Path:
        return self.root / "settings.json"

    @property
    def certificate(self) -> Path:
        """The chain the user gave (mode = 'files'), leaf first."""
        return self.root / "fullchain.pem"

    @property
    def key(self) -> Path:
        return self.root / "privkey.pem"

    @property
    def ca_bundle(self) -> Path:
        """The CAs an ACME directory's HTTPS is checked against (a private or test one)."""
        return self.root / "acme-ca.pem"

    @property
    def webroot(self) -> Path:
        return self.root / "webroot"

    @property
    def acme(self) -> Path:
        """certbot's --config-dir: the account, and the lineage named after the app."""
        return self.root / "acme"

    @property
    def acme_work(self) -> Path:
        return self.root / "acme-work"

    @property
    def acme_logs(self) -> Path:
        return self.root / "acme-logs"

    @property
    def live_certificate(self) -> Path:
        return self.acme / "live" / self.app.name / "fullchain.pem"

    @property
    def live_key(self) -> Path:
        return self.acme / "live" / self.app.name / "privkey.pem"


def apply(
    app: AppLayout,
    settings: TlsSettings | None,
    *,
    certificate: bytes | None = None,
    key: bytes | None = None,
    ca_bundle: bytes | None = None,
) -> None:
    """Keep what a deploy decided, as the host's state (state.json's way: written here,
    atomically): the settings, and the files sent with them, 0600; no settings: HTTPS is
    off, and the files the user gave are removed (an ACME account and lineage stay, for
    the day it is back on)."""
    paths = TlsPaths(app)
    if settings is None or settings.behind_lb or settings.mode != "files":
        for path in (paths.certificate, paths.key):  # no certificate of the user's here now
            path.unlink(missing_ok=True)
    if settings is None:
        paths.settings.unlink(missing_ok=True)
        return
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.webroot.mkdir(exist_ok=True)
    if settings.mode == "files" and not settings.behind_lb:
        if certificate is None or key is None:
            raise ValueError("mode = 'files' is applied with its certificate and key")
        write_atomic(paths.certificate, certificate, 0o600)
        write_atomic(paths.key, key, 0o600)
    if ca_bundle is not None:
        write_atomic(paths.ca_bundle, ca_bundle, 0o600)
    write_atomic(paths.settings, settings.model_dump_json(indent=1).encode(), 0o600)


def load(app: AppLayout) -> TlsSettings | None:
    path = TlsPaths(app).settings
    try:
        return TlsSettings.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None


def site(app: AppLayout) -> TlsSite | None:
    """How the app's site serves HTTPS now; an ACME certificate not obtained yet: the
    challenge's location only."""
    settings = load(app)
    if settings is None or settings.behind_lb:
        return None
    paths = TlsPaths(app)
    if settings.mode == "files":
        certificate, key = paths.certificate, paths.key
    else:
        certificate, key = paths.live_certificate, paths.live_key
    ready = certificate.is_file() and key.is_file()
    return TlsSite(
        listen=settings.listen,
        certificate=certificate if ready else None,
        key=key if ready else None,
        redirect=settings.redirect,
        hsts_max_age=settings.hsts_max_age,
        stapling=ready and names_ocsp_responder(certificate.read_bytes()),
        webroot=paths.webroot if settings.mode == "acme" else None,
        session_cache=f"shipyard_{app.name.replace('-', '_')}",
    )


def behind_lb(app: AppLayout) -> bool:
    """Whether HTTPS ends on the fleet's lb in front of this web host."""
    settings = load(app)
    return settings is not None and settings.behind_lb


def names_ocsp_responder(chain_pem: bytes) -> bool:
    """Whether the chain's first certificate (the leaf) names an OCSP responder."""
    found = _PEM_CERT.search(chain_pem)
    if found is None:
        return False
    try:
        der = base64.b64decode(b"".join(found.group(1).split()))
    except ValueError:
        return False
    return _OCSP_OID in der


def check_url(app: AppLayout, plain: str, path: str) -> str:
    """The URL that reaches the app through nginx: HTTPS when it is served, plain HTTP
    otherwise (or when plain HTTP is not redirected)."""
    served = site(app)
    https = served is not None and served.redirect_now
    listen = served.listen if served is not None and https else plain
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "*", "[::]", ""):
        host = "127.0.0.1"
    return f"{'https' if https else 'http'}://{host}:{port}{path}"


# --- ACME through certbot ----------------------------------------------------------------------


def find_certbot(host: str = "local") -> str:
    beside = Path(sys.executable).with_name("certbot")  # pip's, in shipyard's own venv
    found = shutil.which("certbot") or (str(beside) if os.access(beside, os.X_OK) else None)
    if found is None:
        raise HostError(
            host,
            "certbot is not installed: tls.mode = 'acme' obtains and renews certificates with it.",
            hint="Install it on the host (Debian/Ubuntu: apt-get install certbot), or use "
            "mode = 'files' with a certificate you provide.",
        )
    return found


def _common_args(paths: TlsPaths) -> tuple[str, ...]:
    return (
        "--non-interactive",
        "--config-dir",
        str(paths.acme),
        "--work-dir",
        str(paths.acme_work),
        "--logs-dir",
        str(paths.acme_logs),
    )


def obtain_args(certbot: str, app: AppLayout, settings: TlsSettings) -> tuple[str, ...]:
    """certbot's command that obtains (or, when they changed, re-obtains) the certificate
    for the app's domains, its HTTP-01 answers written to the webroot nginx serves."""
    paths = TlsPaths(app)
    domains = [arg for domain in settings.domains for arg in ("-d", domain)]
    return (
        certbot,
        "certonly",
        *_common_args(paths),
        "--webroot",
        "--webroot-path",
        str(paths.webroot),
        "--cert-name",
        app.name,
        "--server",
        settings.directory,
        "--email",
        settings.email,
        "--agree-tos",
        "--no-eff-email",
        "--keep-until-expiring",
        "--expand",
        *domains,
    )


def renew_args(certbot: str, app: AppLayout, *, force: bool) -> tuple[str, ...]:
    """certbot's renewal of the app's lineage: only under 30 days left, unless `force`."""
    return (
        certbot,
        "renew",
        *_common_args(TlsPaths(app)),
        "--cert-name",
        app.name,
        # its own random wait is for cron jobs: the renewal loop has its own
        "--no-random-sleep-on-renew",
        *(("--force-renewal",) if force else ()),
    )


def certbot_env(app: AppLayout, settings: TlsSettings) -> dict[str, str]:
    """certbot's environment: the CA of a private ACME directory, when one was given."""
    env = dict(os.environ)
    if settings.ca_bundle:
        env["REQUESTS_CA_BUNDLE"] = str(TlsPaths(app).ca_bundle)
    return env


def run_certbot(argv: tuple[str, ...], app: AppLayout, settings: TlsSettings) -> None:
    try:
        done = _certbot(argv, app, settings)
        waited = 0.0
        # another certbot on the same dirs (the renewal loop of this app): its turn ends soon
        while done.returncode != 0 and _BUSY in done.stderr + done.stdout and waited < 60:
            time.sleep(1)
            waited += 1
            done = _certbot(argv, app, settings)
    except subprocess.TimeoutExpired:
        raise HostError(
            "local",
            f"certbot did not finish within {CERTBOT_TIMEOUT} s for app {app.name}.",
            hint=f"Its log is in {TlsPaths(app).acme_logs}.",
        ) from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise HostError(
            "local",
            f"certbot could not get a certificate for {', '.join(settings.domains)} from "
            f"{settings.directory}:\n{tail}",
            hint="Each domain must resolve to this host and reach its nginx on the plain "
            "HTTP port (HTTP-01); meanwhile the app is served over plain HTTP. Once fixed, "
            "run 'shipyard tls renew' (or deploy again). certbot's log is in "
            + str(TlsPaths(app).acme_logs)
            + ".",
        )


_BUSY = "Another instance of Certbot is already running"


def _certbot(
    argv: tuple[str, ...], app: AppLayout, settings: TlsSettings
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=certbot_env(app, settings),
        capture_output=True,
        text=True,
        timeout=CERTBOT_TIMEOUT,
        check=False,
    )


def fingerprint(app: AppLayout) -> str | None:
    """The sha256 of the certificate nginx would load now; None: there is none."""
    settings = load(app)
    if settings is None:
        return None
    paths = TlsPaths(app)
    path = paths.certificate if settings.mode == "files" else paths.live_certificate
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
