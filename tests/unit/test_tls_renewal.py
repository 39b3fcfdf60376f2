"""The renewal loop's supervisor program: read back by supervisor's own loader, present
exactly while the app has an ACME certificate to renew, and removed with the app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from supervisor import options

from shipyard.host import tls, tlsops
from shipyard.host.layout import HostLayout
from shipyard.host.local import LocalConnection

ACME = tls.TlsSettings(
    mode="acme",
    listen="0.0.0.0:443",
    redirect=True,
    hsts_max_age=0,
    domains=["app.example.com"],
    email="ops@example.com",
    directory="https://acme.test/dir",
)


class Updates:
    """A supervisord that counts `update` calls (all the loop's setup asks of it)."""

    def __init__(self) -> None:
        self.updates = 0

    def update(self) -> list[str]:
        self.updates += 1
        return []


def _program(text: str) -> Any:
    parser = options.UnhosedConfigParser()
    parser.read_string(text)
    loader = options.ServerOptions()
    loader.here = "/"
    (section,) = parser.sections()
    (config,) = loader.processes_from_section(parser, section, section.split(":", 1)[1])
    return config


def test_the_program_runs_the_loop_for_the_app_with_this_python(tmp_path: Path) -> None:
    app = HostLayout(tmp_path / "base").app("web")
    app.logs.mkdir(parents=True)  # supervisor checks its log's directory
    config = _program(tlsops.renewal_program(app, "/opt/sy/venv/bin/python"))
    assert config.name == "web-tls-renew"
    assert config.command.split() == [
        "/opt/sy/venv/bin/python",
        "-m",
        "shipyard.host.tlsops",
        str(app.host.base),
        "web",
    ]
    assert config.autostart is True and config.stopsignal == 15  # TERM
    assert config.stdout_logfile == str(app.logs / "tls-renew.log")


def test_the_program_is_there_exactly_while_acme_is(tmp_path: Path) -> None:
    app = HostLayout(tmp_path / "base").app("web")
    app.host.programs.mkdir(parents=True)
    supervisor = Updates()
    conn = LocalConnection()
    tlsops.ensure_renewal(conn, app, supervisor)  # type: ignore[arg-type]
    assert not app.tls_program_file.exists() and supervisor.updates == 0
    tls.apply(app, ACME)
    tlsops.ensure_renewal(conn, app, supervisor)  # type: ignore[arg-type]
    assert sys.executable in app.tls_program_file.read_text() and supervisor.updates == 1
    tlsops.ensure_renewal(conn, app, supervisor)  # type: ignore[arg-type]
    assert supervisor.updates == 1  # unchanged: no update for nothing
    tls.apply(app, None)
    tlsops.ensure_renewal(conn, app, supervisor)  # type: ignore[arg-type]
    assert not app.tls_program_file.exists() and supervisor.updates == 2
