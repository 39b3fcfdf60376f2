"""The per-host runtime: shipyard's own supervisord and nginx under the base directory."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from shipyard.errors import CommandFailed, DeployError, HostError
from shipyard.host import faults, journal, orphans, recover, render
from shipyard.host.layout import SYSTEM_NGINX_PIDFILE, HostLayout
from shipyard.host.nginx_workers import (
    SYSTEM_NGINX_CONF,
    Workers,
    app_group,
    is_member,
    managed_workers,
    system_nginx_user,
)
from shipyard.host.render import NginxBinary
from shipyard.host.steps import Command, Connection, Upload, execute
from shipyard.host.supervisor import Supervisor, SupervisorClient

NGINX_PROGRAM = "nginx"
NGINX_SEARCH = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")


def find_nginx(host: str = "local") -> NginxBinary:
    path = shutil.which("nginx") or next((p for p in NGINX_SEARCH if os.access(p, os.X_OK)), None)
    if path is None:
        raise HostError(
            host,
            "nginx is not installed (looked on PATH and in /usr/sbin, /usr/local/sbin).",
            hint="Install it: 'sudo apt-get install -y nginx' (Debian/Ubuntu), then deploy again.",
        )
    etc = Path("/etc/nginx")
    mime = etc / "mime.types"
    params = etc / "uwsgi_params"
    return NginxBinary(
        path=path,
        mime_types=str(mime) if mime.is_file() else None,
        uwsgi_params=str(params) if params.is_file() else None,
    )


def runtime_files(
    host: HostLayout, nginx: NginxBinary, workers: Workers | None = None
) -> list[Upload]:
    """The files of the runtime itself; rewriting an unchanged one is skipped by the caller.
    `workers`: who the managed nginx's workers run as (None: shipyard's own user)."""
    run_as = workers.directive if workers else None
    files = [
        Upload(render.launcher_script(), _posix(host.launcher), mode=0o755),
        Upload(
            render.supervisord_conf(host, nginx, None, sys.executable).encode(),
            _posix(host.supervisor_conf),
        ),
    ]
    if not host.system_nginx:
        main_conf = render.nginx_main_conf(host, nginx, run_as).encode()
        files.append(Upload(main_conf, _posix(host.nginx_conf)))
        files.append(Upload(render.nginx_start_script(), _posix(host.nginx_start), mode=0o644))
    return files


def ensure_runtime(conn: Connection, host: HostLayout, run_as: str | None = None) -> Supervisor:
    """Make the base's supervisord and nginx run with current configs; return the client.
    `run_as`: the app user (when shipyard runs as root), whose socket nginx must reach."""
    nginx = find_nginx(conn.host)
    managed = [] if host.system_nginx else [host.nginx_sites, host.nginx_dir / "tmp"]
    conn.make_dirs([_posix(d) for d in (host.logs, host.programs, host.wheels, *managed)])
    workers = None
    if host.system_nginx:
        _let_system_nginx_in(conn, run_as)
    else:
        workers = managed_workers(host.base, run_as)
    changed = write_if_changed(conn, runtime_files(host, nginx, workers))
    supervisor = Supervisor(host.supervisor_socket, conn.host)

    def start() -> None:
        test_nginx(conn, host, nginx)
        _start_supervisord(conn, host, supervisor)

    # what a supervisord or an nginx master that died left running is taken over first
    recover.heal_runtime(conn, host, supervisor, start)
    if not supervisor.is_running():
        start()
        return supervisor
    if _posix(host.nginx_conf) in changed:
        reload_nginx(conn, host, supervisor)
    if _posix(host.supervisor_conf) in changed:
        with recover.nginx_sockets_held(host, supervisor):
            if NGINX_PROGRAM in supervisor.update():  # restarted: up on the sockets held
                recover.wait_nginx_ready(host, supervisor, recover.READY_TIMEOUT)
    return supervisor


def _let_system_nginx_in(conn: Connection, run_as: str | None) -> None:
    """The host's nginx reaches the app's socket (0660) through the app's group: its worker
    user joins that group (new workers, started at the next reload, have it)."""
    if os.geteuid() != 0:
        return
    group = app_group(run_as)
    try:
        user = system_nginx_user(SYSTEM_NGINX_CONF.read_text())
    except OSError:
        user = "www-data"
    if group == "root":
        raise HostError(
            conn.host,
            f"the app would run as root, and the host's nginx (as {user}) could only reach its "
            "socket if it joined the root group.",
            hint="Set the target's app_user to a user of its own (default 'shipyard').",
        )
    try:
        if is_member(user, group):
            return
    except KeyError:
        raise HostError(
            conn.host,
            f"the host's nginx runs as {user} (its `user` in {SYSTEM_NGINX_CONF}), "
            "which does not exist.",
            hint="Fix nginx's configuration, then deploy again.",
        ) from None
    execute(conn, Command(("usermod", "--append", "--groups", group, user), timeout=60))


def write_if_changed(conn: Connection, uploads: list[Upload]) -> set[PurePosixPath]:
    changed = set()
    for upload in uploads:
        if conn.read(upload.dest) != upload.content:
            conn.put(upload)
            changed.add(upload.dest)
    return changed


def test_nginx(conn: Connection, host: HostLayout, nginx: NginxBinary | None = None) -> None:
    nginx = nginx or find_nginx(conn.host)
    argv = (nginx.path,) if host.system_nginx else render.nginx_command(host, nginx)
    command = Command((*argv, "-t", "-q"), timeout=30)
    result = conn.run(command)
    if not result.ok:
        raise CommandFailed(
            result,
            what="nginx rejected the configuration (nginx -t)",
            hint="Nothing was reloaded: the serving release is untouched. Fix it and retry.",
        )


class ReloadHandle(Protocol):
    """A graceful nginx reload under way (Reload; a fake in unit tests)."""

    def wait_handed_over(self) -> None: ...

    def wait_drained(self) -> None: ...

    def is_drained(self) -> bool: ...


@dataclass(frozen=True)
class Reload:
    """A graceful nginx reload under way: new workers serve, the old ones finish what they have.

    nginx tells its old workers to quit only about 0.1 s after the new ones start, and both
    accept new connections until then (`wait_handed_over()`). An old worker then stops
    accepting, and exits once its in-flight requests are done. Until it exits it may still
    send a request to the upstream it was configured with, so an app server that nginx no
    longer points at is stopped only after `wait_drained()`.
    """

    master: int | None  # None: nothing to wait for (nginx was started, not reloaded)
    old_workers: frozenset[int] = frozenset()
    deadline: float = 0.0

    def wait_handed_over(self) -> None:
        """Until no old worker accepts new connections: each has exited, or has closed its
        listening sockets, which it does as it renames itself "worker process is shutting
        down"."""
        if self.master is None:
            return
        while time.monotonic() < self.deadline:
            if not any(_accepts(pid) for pid in _children(self.master) & self.old_workers):
                return
            time.sleep(0.01)

    def wait_drained(self) -> None:
        """Until the old workers have exited, or the grace period has passed (traffic has
        moved; an old app server is then stopped gracefully after its own timeout)."""
        while time.monotonic() < self.deadline and not self.is_drained():
            time.sleep(0.01)

    def is_drained(self) -> bool:
        """Every old worker has exited: nothing is open through them any more."""
        return self.master is None or not _children(self.master) & self.old_workers


def reload_nginx(
    conn: Connection,
    host: HostLayout,
    supervisor: SupervisorClient,
    grace: float = 60,
    *,
    drain: bool = True,
) -> Reload:
    """Test the config, reload gracefully, and return once new workers serve.

    With `drain`, also wait until the old workers have finished their in-flight requests on
    the old upstream: waiting for them is what makes it safe to stop an old app server.

    The nginx is shared by the apps under the base: first, the site file of any app whose
    switch died half-way is put back (journal.put_back_dead_sites), so that this reload
    loads no other app's half-made switch.
    """
    journal.put_back_dead_sites(host)
    test_nginx(conn, host)
    faults.point("switch:before-reload")
    if host.system_nginx:
        reload = _reload_system_nginx(conn, host, grace)
    else:
        info = supervisor.process(NGINX_PROGRAM)
        if info is None or info.state not in ("RUNNING", "STARTING"):
            supervisor.start(NGINX_PROGRAM)
            recover.wait_nginx_ready(host, supervisor, recover.READY_TIMEOUT)
            return Reload(None)
        # one still STARTING gets its HUP once it has workers (its signal handlers are set)
        master = recover.wait_nginx_ready(host, supervisor, recover.READY_TIMEOUT, ports=False)
        assert master is not None
        old_workers = _children(master)
        log_size = _size(host.nginx_error_log)
        supervisor.signal(NGINX_PROGRAM, "HUP")
        reload = _wait_for_new_workers(master, old_workers, grace, host.nginx_error_log, log_size)
    if drain:
        reload.wait_drained()
    return reload


def _accepts(worker: int) -> bool:
    try:
        title = Path(f"/proc/{worker}/cmdline").read_bytes()
    except OSError:
        return False  # gone
    return b"shutting down" not in title


def _wait_for_new_workers(
    master: int, old_workers: set[int], grace: float, error_log: Path, log_size: int
) -> Reload:
    """Wait until new workers serve (nginx starts them at once, beside the old ones).

    A reload nginx refuses (a port it cannot bind, say) starts no new workers and says why
    in its error log: that is reported at once instead of waiting out the grace period.
    """
    reload = Reload(master, frozenset(old_workers), time.monotonic() + grace)
    next_look = time.monotonic() + 0.5
    while time.monotonic() < reload.deadline:
        current = _children(master)
        if current - old_workers:
            return reload
        if time.monotonic() >= next_look:
            next_look = time.monotonic() + 0.5
            if refusal := _new_emergencies(error_log, log_size):
                raise DeployError(
                    f"nginx did not take the new configuration: {refusal}{_holder(refusal)}",
                    hint="nginx keeps its previous configuration, so what served still "
                    f"serves. See {error_log}.",
                )
        time.sleep(0.005)
    return reload


def _holder(refusal: str) -> str:
    """Who holds the port of a bind() nginx could not do, named for the message."""
    found = re.search(r"bind\(\) to \S*:(\d+) failed", refusal)
    holders = orphans.who_holds(int(found[1])) if found else None
    return f" (held by {holders})" if holders else ""


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _new_emergencies(error_log: Path, offset: int) -> str | None:
    try:
        with error_log.open("rb") as handle:
            handle.seek(offset)
            text = handle.read(65536).decode(errors="replace")
    except OSError:
        return None
    lines = [line for line in text.splitlines() if "[emerg]" in line or "[alert]" in line]
    return lines[0].split("] ", 1)[-1] if lines else None


def system_nginx_master() -> int | None:
    """The running system nginx's master pid, if it runs in this network namespace."""
    try:
        pid = int(SYSTEM_NGINX_PIDFILE.read_text().strip())
        same_net = os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError):
        return None
    return pid if same_net and comm == "nginx" else None


def _reload_system_nginx(conn: Connection, host: HostLayout, grace: float) -> Reload:
    """Reload the host's own nginx gracefully, or start it (systemd where it runs)."""
    master = system_nginx_master()
    if master is None:
        nginx = find_nginx(conn.host)
        systemd = Path("/run/systemd/system").is_dir()
        argv = ("systemctl", "start", "nginx") if systemd else (nginx.path,)
        execute(conn, Command(argv, timeout=60))
        return Reload(None)
    old_workers = _children(master)
    log_size = _size(host.nginx_error_log)
    os.kill(master, signal.SIGHUP)
    return _wait_for_new_workers(master, old_workers, grace, host.nginx_error_log, log_size)


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return {int(part) for part in text.split()}
    except OSError:
        return _children_by_scan(pid)


def _children_by_scan(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _start_supervisord(conn: Connection, host: HostLayout, supervisor: Supervisor) -> None:
    conn.remove(_posix(host.supervisor_socket))
    command = Command(
        (sys.executable, "-m", "supervisor.supervisord", "-c", str(host.supervisor_conf)),
        timeout=30,
    )
    execute(conn, command)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if supervisor.is_running():
            return
        time.sleep(0.05)
    raise DeployError(
        f"supervisord did not come up on {host.supervisor_socket} within 10 s.",
        hint=f"See {host.logs / 'supervisord.log'}.",
    )


def stop_runtime(host: HostLayout) -> bool:
    """Shut down the base's supervisord (and with it nginx and every app), and what one that
    died left running. True if it ran."""
    supervisor = Supervisor(host.supervisor_socket)
    running = supervisor.is_running()
    if running:
        supervisor.shutdown()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and host.supervisor_pidfile.exists():
            time.sleep(0.05)
    recover.stop_orphans(host, supervisor, None, 30)
    return running


def _posix(path: Path) -> PurePosixPath:
    return PurePosixPath(path)
