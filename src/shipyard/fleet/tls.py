"""HTTPS on an ssh target: the certificate lives where HTTPS ends, on the lb when the
target has one (its web hosts then pass the lb's scheme on to the app), else on each web
host. ACME needs the lb: one host must answer every challenge for the names."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shipyard.errors import UsageError
from shipyard.fleet.remote import RemoteHost
from shipyard.host import protocol as p
from shipyard.host import wire
from shipyard.project.tlsfiles import TlsUpload, tls_upload
from shipyard.spec.model import Spec


class Agents(Protocol):
    def __getitem__(self, host: str) -> _Agent: ...


class _Agent(Protocol):
    def call(self, request: p.Tls, files: list[wire.FileEntry]) -> p.TlsReply: ...


def check_fleet_tls(spec: Spec, target: str, lb: RemoteHost | None) -> None:
    """ACME on a target with no lb is refused before anything is built."""
    tls = spec.tls_for(target)
    if tls is not None and tls.mode == "acme" and lb is None:
        raise UsageError(
            f"target {target!r}: tls.mode = 'acme' on an ssh target needs an `lb`, where "
            "the certificate is obtained and renewed (HTTP-01 must reach one host for "
            "every name).",
            hint="Add lb = 'host' to the target, or use mode = 'files' with a certificate "
            "you provide (each web host gets it).",
        )


def send_tls(
    project: Path,
    spec: Spec,
    target: str,
    web: list[RemoteHost],
    lb: RemoteHost | None,
    agents: Agents,
) -> dict[str, bool]:
    """Each host's HTTPS settings (and, where HTTPS ends, its files); host -> changed."""
    check_fleet_tls(spec, target, lb)
    changed: dict[str, bool] = {}
    for host in [*web, *([lb] if lb is not None else [])]:
        upload = tls_upload(project, spec, target, host.listen)
        settings = upload.settings
        ends_here = lb is None or host is lb
        if settings is not None and not ends_here:
            settings = settings.model_copy(update={"behind_lb": True})
        files = _entries(upload) if ends_here else []
        request = p.Tls(app=spec.name, settings=settings)
        changed[host.name] = agents[host.name].call(request, files).changed
    return changed


def _entries(upload: TlsUpload) -> list[wire.FileEntry]:
    return [wire.file_entry(name, path) for name, path in sorted(upload.sources.items())]
