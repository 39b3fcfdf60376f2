"""Carrying out heal.py's decisions: the runtime's (supervisord back without a second server
beside an orphan, nginx started on the orphans' sockets before they quit) and an app's (its
orphaned server replaced by the other slot, then stopped; or stopped, for stop and destroy).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from shipyard.errors import DeployError
from shipyard.host import handover, heal, orphans
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.state import load_state
from shipyard.host.steps import Connection
from shipyard.host.supervisor import SupervisorClient

NGINX = "nginx"
READY_TIMEOUT = 15.0
HANDED_OVER_TIMEOUT = 30.0
RUNTIME_ACTIONS = (
    heal.StartSupervisord,
    heal.SetAside,
    heal.HandOverNginx,
    heal.StartNginx,
    heal.PortTaken,
)


def live_slots(host: HostLayout) -> dict[str, str | None]:
    """Each app under the base by name, with the slot its state says is live."""
    slots: dict[str, str | None] = {}
    for state_file in sorted(host.base.glob("*/state.json")):
        state = load_state(host.app(state_file.parent.name))
        slots[state_file.parent.name] = state.slot if state.live else None
    return slots


def decide(host: HostLayout, supervisor: SupervisorClient) -> list[heal.Action]:
    return heal.decide(orphans.observe(host, supervisor), live_slots(host))


def heal_runtime(
    conn: Connection,
    host: HostLayout,
    supervisor: SupervisorClient,
    start_supervisord: Callable[[], None],
) -> list[str]:
    """Bring the base's supervisord and nginx back if they died, taking over from what they
    left running; return what was done (also written to the recovery log)."""
    actions = [a for a in decide(host, supervisor) if isinstance(a, RUNTIME_ACTIONS)]
    if all(isinstance(a, heal.StartSupervisord) for a in actions):
        return []  # nothing left behind: the runtime starts as it always does
    taken = [a for a in actions if isinstance(a, heal.PortTaken)]
    if taken:
        raise DeployError(
            "; ".join(a.describe() for a in taken) + ".",
            hint="Stop that process (or give the app another `listen`), then run the command "
            "again. Nothing was changed.",
        )
    notes = [a.describe() for a in actions if not isinstance(a, heal.HandOverNginx)]
    takeover = next((a for a in actions if isinstance(a, heal.HandOverNginx)), None)
    with contextlib.ExitStack() as stack:
        fds: list[int] = []
        if takeover is not None:
            try:
                fds = stack.enter_context(handover.taken(takeover.listeners))
            except OSError as err:
                notes.append(f"cannot take over nginx's sockets ({err}): they are released first")
            if fds:
                stack.enter_context(handover.offered(host.nginx_handover, fds))
            else:
                quit_nginx(takeover.quit, host)
        for action in actions:
            if isinstance(action, heal.SetAside):
                conn.remove(PurePosixPath(host.app(action.app).program_file(action.slot)))
        if any(isinstance(a, heal.StartSupervisord) for a in actions):
            start_supervisord()
        if takeover is not None or any(isinstance(a, heal.StartNginx) for a in actions):
            master = start_nginx(host, supervisor)
        if takeover is not None and fds:
            quit_nginx(takeover.quit, host)
        if takeover is not None:
            notes.append(f"{takeover.describe()}: the managed nginx (pid {master}) serves")
    _log(host, notes)
    return notes


@contextlib.contextmanager
def nginx_sockets_held(host: HostLayout, supervisor: SupervisorClient) -> Iterator[None]:
    """The managed nginx's listening sockets held and offered to the next nginx that starts,
    for a block that restarts it (supervisord's update of a changed nginx program): the port
    stays open, and the connections that arrive meanwhile wait in its queue."""
    info = supervisor.process(NGINX)
    if host.system_nginx or info is None or info.state not in heal.NGINX_UP or not info.pid:
        yield
        return
    ports = orphans.port_inodes(host)
    held = tuple((info.pid, fd) for fd, inode in orphans.sockets_of(info.pid) if inode in ports)
    with contextlib.ExitStack() as stack:
        try:
            fds = stack.enter_context(handover.taken(held))
        except OSError:  # cannot take them (an old kernel): nginx binds again, as it did
            fds = []
        if fds:
            stack.enter_context(handover.offered(host.nginx_handover, fds))
        yield


def start_nginx(host: HostLayout, supervisor: SupervisorClient) -> int:
    """The managed nginx up and holding every port of the sites, started again if it is not
    (a crash loop on bind(), say); its master's pid."""
    master = wait_nginx_ready(host, supervisor, 1.0, quiet=True)
    if master is not None:
        return master
    supervisor.stop(NGINX)
    supervisor.start(NGINX)
    master = wait_nginx_ready(host, supervisor, READY_TIMEOUT)
    assert master is not None
    return master


def wait_nginx_ready(
    host: HostLayout,
    supervisor: SupervisorClient,
    timeout: float,
    *,
    quiet: bool = False,
    ports: bool = True,
) -> int | None:
    """Until the managed nginx's master is alive and has workers, which (with `ports`) hold
    every port of the sites; its pid. Raises (unless `quiet`) naming what holds a port it
    cannot bind."""
    deadline = time.monotonic() + timeout
    while True:
        info = supervisor.process(NGINX)
        up = info is not None and info.pid and orphans.alive(info.pid)
        if up and info and orphans.workers_hold_ports(info.pid, host if ports else None):
            return info.pid
        failed = info is None or info.state in ("FATAL", "BACKOFF", "EXITED", "STOPPED")
        if time.monotonic() >= deadline or (failed and not quiet):
            if quiet:
                return None
            raise DeployError(
                f"the managed nginx does not serve: {nginx_problem(host, supervisor)}.",
                hint=f"See {host.nginx_error_log}; then run 'shipyard start' again.",
            )
        time.sleep(0.02)


def nginx_problem(host: HostLayout, supervisor: SupervisorClient) -> str:
    """Why nginx is not up, naming the process that holds a port it must bind."""
    facts = orphans.observe(host, supervisor)
    for listener in facts.ports:
        for pid in sorted(listener.pids):
            if not facts.descends(pid, facts.nginx):
                proc = facts.procs.get(pid)
                command = proc.cmdline if proc else "gone"
                return f"bind() to {listener.address} fails: pid {pid} ({command}) holds it"
    return f"nginx is {facts.nginx_state or 'not loaded'} in supervisord"


def quit_nginx(pids: Sequence[int], host: HostLayout) -> None:
    """Tell orphaned nginx processes to finish their requests and exit (a master tells its
    workers), and wait until they hold no port any more (they close their listening sockets
    at once; in-flight requests go on)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
    deadline = time.monotonic() + HANDED_OVER_TIMEOUT
    while time.monotonic() < deadline:
        if not any(orphans.alive(p) and orphans.holds_ports(p, host) for p in _tree(pids)):
            return
        time.sleep(0.02)


def _tree(pids: Sequence[int]) -> set[int]:
    found = set(pids)
    for pid in pids:
        found |= orphans.children(pid)
    return found


def wait_gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(orphans.alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def terminate(pids: Sequence[int], timeout: float) -> list[int]:
    """SIGTERM (an app server's graceful stop), then SIGKILL what is left after `timeout`;
    the pids that had to be killed."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    wait_gone(pids, timeout)
    killed = [p for p in pids if orphans.alive(p)]
    for pid in killed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed


def stop_orphan(action: heal.StopOrphan | heal.ReplaceApp, timeout: float) -> None:
    """Stop an orphaned server. One whose socket path another server now owns deletes that
    path as it exits: a hard link to the live socket keeps it, and is put back."""
    keep_path = isinstance(action, heal.StopOrphan) and action.keep_path
    path = Path(action.orphans[0].holds) if action.orphans else None
    keep = path.with_name(path.name + ".keep") if path else None
    if keep_path and path is not None and keep is not None:
        keep.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.link(path, keep)
    terminate(action.pids, timeout)
    if keep_path and keep is not None and path is not None and keep.exists():
        if path.exists():
            keep.unlink()
        else:
            os.replace(keep, path)


def app_actions(
    host: HostLayout, supervisor: SupervisorClient, app: str
) -> list[heal.StopOrphan | heal.ReplaceApp]:
    """The app's orphaned servers: those not serving first, then the live one."""
    found = [
        a
        for a in decide(host, supervisor)
        if isinstance(a, heal.StopOrphan | heal.ReplaceApp) and a.app == app
    ]
    return sorted(found, key=lambda a: isinstance(a, heal.ReplaceApp))


def recover_app(
    app: AppLayout,
    supervisor: SupervisorClient,
    replace: Callable[[], object],
    timeout: float,
) -> list[str]:
    """Retire the app's orphaned servers: stop those not serving, and replace the live one
    (`replace`: the live release started on the other slot, with traffic moved to it) before
    it is stopped. What was done."""
    notes = []
    for action in app_actions(app.host, supervisor, app.name):
        notes.append(action.describe())
        if isinstance(action, heal.ReplaceApp):
            replace()
        stop_orphan(action, timeout)
    _log(app.host, notes)
    return notes


def stop_orphans(
    host: HostLayout, supervisor: SupervisorClient, app: str | None, timeout: float
) -> list[str]:
    """Stop what a dead supervisord left running: the app's servers (or, with no app, every
    orphan of the base, nginx too). What was stopped."""
    actions = heal.decide(orphans.observe(host, supervisor), {})
    done = []
    for action in actions:
        if isinstance(action, heal.StopOrphan | heal.ReplaceApp) and app in (None, action.app):
            stop_orphan(action, timeout)
            done += [f"{action.app}'s {action.slot} server, orphaned pid {p}" for p in action.pids]
        elif isinstance(action, heal.HandOverNginx) and app is None:
            quit_nginx(action.quit, host)
            wait_gone(action.quit, timeout)
            done += [f"nginx, orphaned pid {p}" for p in action.quit]
    _log(host, done)
    return done


def _log(host: HostLayout, notes: list[str]) -> None:
    if not notes:
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    with contextlib.suppress(OSError):
        host.logs.mkdir(parents=True, exist_ok=True)
        with (host.logs / "recovery.log").open("a") as log:
            log.writelines(f"{stamp} {note}\n" for note in notes)
