"""Where everything lives on a host: one Layout object, passed in, never global. Pure path
arithmetic: nothing here touches the disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.host.artifact import TREE

HOLD_SUFFIX = ".hold"  # after a socket's path: its hold file (gunicorn.conf.py.j2)

# Linux unix socket paths must fit sockaddr_un.sun_path (108 bytes with the NUL).
MAX_SOCKET_PATH = 107
SLOTS = ("blue", "green")
# The system nginx (Debian, Ubuntu, RHEL and nginx.org packages all include conf.d/*.conf)
SYSTEM_NGINX_SITES = Path("/etc/nginx/conf.d")
SYSTEM_NGINX_ERROR_LOG = Path("/var/log/nginx/error.log")
SYSTEM_NGINX_PIDFILE = Path("/run/nginx.pid")


@dataclass(frozen=True)
class HostLayout:
    """The per-host runtime shared by every app under one base directory."""

    base: Path
    system_nginx: bool = False  # the host's own nginx (conf.d) instead of one under the base

    @property
    def runtime(self) -> Path:
        return self.base / ".shipyard"

    @property
    def wheels(self) -> Path:
        return self.runtime / "wheels"

    @property
    def bin(self) -> Path:
        return self.runtime / "bin"

    @property
    def wheel_index(self) -> Path:
        """name -> sha256 of every wheel in the store, written as wheels arrive (remote hosts)."""
        return self.wheels / "index.json"

    @property
    def artifacts(self) -> Path:
        """Release artifacts received from a deploying machine, by id (remote hosts)."""
        return self.runtime / "artifacts"

    @property
    def incoming(self) -> Path:
        return self.runtime / "incoming"

    @property
    def runtime_venv(self) -> Path:
        """The venv shipyard's host agent and supervisord run from (remote hosts)."""
        return self.runtime / "venv"

    @property
    def lb_static(self) -> Path:
        """Static files a load balancer serves at the edge, per app and release."""
        return self.runtime / "edge"

    @property
    def launcher(self) -> Path:
        return self.bin / "shipyard-exec"

    @property
    def logs(self) -> Path:
        return self.runtime / "logs"

    @property
    def supervisor_conf(self) -> Path:
        return self.runtime / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.runtime / "supervisor.sock"

    @property
    def supervisor_pidfile(self) -> Path:
        return self.runtime / "supervisord.pid"

    @property
    def programs(self) -> Path:
        return self.runtime / "programs"

    @property
    def nginx_dir(self) -> Path:
        return self.runtime / "nginx"

    @property
    def nginx_conf(self) -> Path:
        return self.nginx_dir / "nginx.conf"

    @property
    def nginx_sites(self) -> Path:
        return SYSTEM_NGINX_SITES if self.system_nginx else self.nginx_dir / "sites"

    @property
    def nginx_start(self) -> Path:
        """The script nginx starts through (it takes over sockets offered on nginx_handover)."""
        return self.bin / "nginx-start"

    @property
    def nginx_handover(self) -> Path:
        """Where shipyard offers nginx the listening sockets it took over from orphans."""
        return self.runtime / "nginx-handover.sock"

    @property
    def nginx_pidfile(self) -> Path:
        return self.nginx_dir / "nginx.pid"

    @property
    def nginx_error_log(self) -> Path:
        return SYSTEM_NGINX_ERROR_LOG if self.system_nginx else self.logs / "nginx-error.log"

    def app(self, name: str) -> AppLayout:
        return AppLayout(self, name)


@dataclass(frozen=True)
class AppLayout:
    """One app's directories: releases, the `current` link, shared data, state and lock."""

    host: HostLayout
    name: str

    @property
    def root(self) -> Path:
        return self.host.base / self.name

    @property
    def releases(self) -> Path:
        return self.root / "releases"

    def release(self, release_id: str) -> Path:
        return self.releases / release_id

    def venv(self, release_id: str) -> Path:
        return self.release(release_id) / "venv"

    def workdir(self, release_id: str, tree: bool) -> Path:
        """Where the release's processes run, with it on PYTHONPATH: its copy of the source
        tree, or (a wheel's release) the release itself."""
        return self.release(release_id) / TREE if tree else self.release(release_id)

    @property
    def layers(self) -> Path:
        """Dependency layers, each a venv shared by the releases with its dependencies."""
        return self.root / "layers"

    def layer(self, layer_id: str) -> Path:
        return self.layers / layer_id

    @property
    def current(self) -> Path:
        return self.root / "current"

    @property
    def shared(self) -> Path:
        return self.root / "shared"

    @property
    def var(self) -> Path:
        """Target of each release venv's `var/`, where Flask keeps its instance folder."""
        return self.shared / "var"

    @property
    def data(self) -> Path:
        return self.shared / "data"

    @property
    def media(self) -> Path:
        """A Django project's uploads (MEDIA_ROOT), served by nginx: apart from data/, which
        nginx's workers never read."""
        return self.shared / "media"

    @property
    def logs(self) -> Path:
        return self.shared / "logs"

    @property
    def run(self) -> Path:
        return self.shared / "run"

    @property
    def config_file(self) -> Path:
        """Config vars set with `shipyard config set` (0600)."""
        return self.shared / "config.json"

    @property
    def scale_file(self) -> Path:
        """Process counts set with `shipyard scale`, kept across deploys."""
        return self.shared / "scale.json"

    @property
    def setup_file(self) -> Path:
        """The record that the spec's one-time setup command is done (kept with the data)."""
        return self.shared / "setup.json"

    def env_file(self, slot: str) -> Path:
        return self.shared / f"env.{slot}"

    def socket(self, slot: str) -> Path:
        return self.run / f"{slot}.sock"

    def hold_file(self, slot: str) -> Path:
        """While it names a live process, a gunicorn started on the slot's socket forks no
        worker (Switch, while the release command runs)."""
        return self.run / f"{slot}.sock{HOLD_SUFFIX}"

    def program(self, process: str, slot: str) -> str:
        return f"{self.name}-{process}-{slot}"

    def program_file(self, slot: str) -> Path:
        return self.host.programs / f"{self.name}.{slot}.conf"

    @property
    def tls_program_file(self) -> Path:
        """The supervisor program that renews the app's ACME certificate (host/tlsops.py)."""
        return self.host.programs / f"{self.name}.tls.conf"

    def app_log(self, process: str, slot: str) -> Path:
        return self.logs / f"{process}-{slot}.log"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    @property
    def error_log(self) -> Path:
        return self.logs / "nginx-error.log"

    @property
    def site_file(self) -> Path:
        prefix = "shipyard-" if self.host.system_nginx else ""
        return self.host.nginx_sites / f"{prefix}{self.name}.conf"

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def tls(self) -> Path:
        """HTTPS: the settings the last deploy chose, the certificate and key (0600), and
        ACME's account, lineage and challenge webroot (host/tls.py)."""
        return self.shared / "tls"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def check_socket_paths(self) -> None:
        longest = max(
            [self.socket(slot) for slot in SLOTS]
            + [self.host.supervisor_socket, self.host.nginx_handover],
            key=lambda p: len(str(p)),
        )
        if len(str(longest).encode()) > MAX_SOCKET_PATH:
            raise UsageError(
                f"the base directory {self.host.base} is too deep: the socket path {longest} is "
                f"longer than the {MAX_SOCKET_PATH} bytes Linux allows.",
                hint="Set SHIPYARD_HOME (or the target's base_dir) to a shorter path.",
            )
