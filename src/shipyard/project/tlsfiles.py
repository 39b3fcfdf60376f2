"""The deploying side of HTTPS: the settings a target's hosts get, and the files read here
that go with them (a certificate and key the user provides, an ACME server's CA)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shipyard.errors import SpecError
from shipyard.host.layout import AppLayout
from shipyard.host.tls import TlsPaths, TlsSettings, settings_of
from shipyard.plan import MASK, PlannedStage
from shipyard.spec.model import Spec


@dataclass(frozen=True)
class TlsUpload:
    """What a deploy sends about HTTPS; `key` is secret: never shown (repr masks it)."""

    settings: TlsSettings | None
    certificate: bytes | None = None
    key: bytes | None = None
    ca_bundle: bytes | None = None
    sources: dict[str, Path] = field(default_factory=dict)  # name -> the file read here

    def __repr__(self) -> str:
        key = "***" if self.key is not None else None
        return f"TlsUpload(settings={self.settings!r}, key={key})"


def tls_upload(project: Path, spec: Spec, target: str, plain_listen: str) -> TlsUpload:
    tls = spec.tls_for(target)
    if tls is None:
        return TlsUpload(None)
    own = spec.targets.get(target)
    where = f"targets.{target}.tls" if own is not None and own.tls is not None else "tls"
    settings = settings_of(tls, spec.domains, plain_listen)
    if tls.mode == "files":
        return TlsUpload(
            settings,
            certificate=_read(project, tls.certificate, f"{where}.certificate", b"CERTIFICATE"),
            key=_read(project, tls.key, f"{where}.key", b"PRIVATE KEY"),
            sources={
                "certificate": project / Path(tls.certificate).expanduser(),
                "key": project / Path(tls.key).expanduser(),
            },
        )
    if not tls.ca_bundle:
        return TlsUpload(settings)
    ca = _read(project, tls.ca_bundle, f"{where}.ca_bundle", b"CERTIFICATE")
    return TlsUpload(
        settings, ca_bundle=ca, sources={"ca_bundle": project / Path(tls.ca_bundle).expanduser()}
    )


def _read(project: Path, name: str, key: str, kind: bytes) -> bytes:
    path = project / Path(name).expanduser()
    try:
        content = path.read_bytes()
    except OSError as err:
        raise SpecError(
            f"{key}: cannot read {path} ({err.strerror or err}).",
            hint="Give the path of a PEM file on this machine, relative to the project or "
            "absolute.",
        ) from None
    if b"-----BEGIN " not in content or kind not in content:
        what = "a certificate" if kind == b"CERTIFICATE" else "a private key"
        raise SpecError(
            f"{key}: {path} does not hold {what} in PEM form (-----BEGIN ...).",
            hint="Convert it, e.g. 'openssl x509 -in cert.der -inform der -out cert.pem'.",
        )
    return content


def tls_stage(app: AppLayout, upload: TlsUpload) -> PlannedStage:
    """What a deploy would do about HTTPS, for a dry run: the files it writes are named,
    never shown (the key's content least of all)."""
    settings = upload.settings
    if settings is None:
        return PlannedStage(name="tls", notes=["no [tls]: plain HTTP only"])
    paths = TlsPaths(app)
    notes = [f"HTTPS on {settings.listen} for {', '.join(settings.domains)}"]
    if upload.certificate is not None:
        notes.append(f"write {paths.certificate} (0600, {len(upload.certificate)} bytes)")
    if upload.key is not None:
        notes.append(f"write {paths.key} (0600, {MASK})")
    if settings.mode == "acme":
        notes.append(
            f"obtain a certificate from {settings.directory} (HTTP-01 from {paths.webroot}) "
            "unless one is there; renew it on the host"
        )
    if settings.redirect:
        notes.append("redirect plain HTTP to HTTPS")
    return PlannedStage(name="tls", notes=notes)
