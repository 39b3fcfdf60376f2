"""How host code reaches the host's servers: supervisord, nginx's reload, app probes, and the
connections open on an app's socket.

The defaults are the real ones; unit tests pass fakes (tests/unit/fakes.py), so the switch
and the release state machine run without servers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shipyard.host import drain, health, recover, runtime
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.host.runtime import ReloadHandle
from shipyard.host.steps import Connection
from shipyard.host.supervisor import Supervisor, SupervisorClient

SocketProbe = Callable[[Path, str, str, health.Healthy], health.Probe]  # socket, path, host
UrlProbe = Callable[[str, str, health.Healthy], health.Probe]  # url, host header


class Reloader(Protocol):
    """Test nginx's config and reload it gracefully (runtime.reload_nginx)."""

    def __call__(
        self,
        conn: Connection,
        host: HostLayout,
        supervisor: SupervisorClient,
        *,
        drain: bool = True,
    ) -> ReloadHandle: ...


def connect_supervisor(host: HostLayout) -> SupervisorClient:
    """A client of the base's supervisord, whether it runs or not."""
    return Supervisor(host.supervisor_socket)


def stop_orphans(host: HostLayout, supervisor: SupervisorClient, app: str | None) -> list[str]:
    """Stop what a supervisord that died left running of `app` (None: of the whole base)."""
    return recover.stop_orphans(host, supervisor, app, ORPHAN_STOP_TIMEOUT)


ORPHAN_STOP_TIMEOUT = 40.0


@dataclass(frozen=True)
class Servers:
    ensure_runtime: Callable[[Connection, HostLayout, str | None], SupervisorClient] = (
        runtime.ensure_runtime
    )
    supervisor: Callable[[HostLayout], SupervisorClient] = connect_supervisor
    stop_runtime: Callable[[HostLayout], bool] = runtime.stop_runtime
    stop_orphans: Callable[[HostLayout, SupervisorClient, str | None], list[str]] = stop_orphans
    reload_nginx: Reloader = runtime.reload_nginx
    find_nginx: Callable[[str], NginxBinary] = runtime.find_nginx
    probe_socket: SocketProbe = health.probe_socket
    probe_uwsgi_socket: SocketProbe = health.probe_uwsgi_socket
    probe_url: UrlProbe = health.probe_url
    open_connections: drain.Connections = drain.open_connections


SERVERS = Servers()
