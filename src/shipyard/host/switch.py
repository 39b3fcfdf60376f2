"""The zero-downtime switch: start the new release on the idle slot, check it, point nginx at it."""

from __future__ import annotations

import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from shipyard.errors import CommandFailed, DeployError, HealthCheckFailed, ShipyardError
from shipyard.host import (
    crash_output,
    drain,
    faults,
    health,
    interrupts,
    journal,
    programs,
    render,
    tls,
)
from shipyard.host.layout import AppLayout
from shipyard.host.procman import ProcessManager, SlotRun, SupervisorPrograms, slot_names
from shipyard.host.release import app_environment, release_manifest, release_spec, static_dirs
from shipyard.host.render import NginxBinary
from shipyard.host.runtime import ReloadHandle
from shipyard.host.scale import load_scale, scaled
from shipyard.host.servers import SERVERS, Servers
from shipyard.host.steps import Command, Connection, Symlink, Upload, as_user
from shipyard.host.supervisor import FAILED_STATES, UP_STATES, ProcessInfo, SupervisorClient
from shipyard.spec.model import ServerType, Spec

RELEASE_COMMAND_TIMEOUT = 1800
NGINX_CHECK_TIMEOUT = 10.0
# Past the longest `startsecs`: how long supervisord may take to report a process RUNNING.
WORKER_START_GRACE = 5.0


@dataclass(frozen=True)
class Outcome:
    release: str
    slot: str
    previous: str | None


def listen_url(listen: str, path: str = "/") -> str:
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "*", "[::]", ""):
        host = "127.0.0.1"
    return f"http://{host}:{port}{path}"


def host_header(spec: Spec) -> str:
    return spec.domains[0] if spec.domains else "localhost"


class Switch:
    """Move an app's traffic to `release_id` with no failed request; undo on any failure.

    Order matters: the new server must answer on its own socket before nginx is pointed at it,
    and the old server is stopped only after nginx's old workers have finished, or after the
    drain time of the WebSockets still open on it.
    """

    def __init__(
        self,
        conn: Connection,
        supervisor: SupervisorClient,
        app: AppLayout,
        release_id: str,
        *,
        config: dict[str, str],
        listen: str,
        live: tuple[str, str] | None,
        run_release_command: bool,
        run_setup: bool = False,
        run_as: str | None = None,
        servers: Servers = SERVERS,
        nginx_check_timeout: float = NGINX_CHECK_TIMEOUT,
        warm: bool = False,
        action: str = "deploy",
        procs: ProcessManager | None = None,
    ) -> None:
        self.conn = conn
        # the app's processes (supervisord's programs unless given); `supervisor` runs the
        # managed nginx either way
        self.procs = procs or SupervisorPrograms(conn, supervisor, app, run_as)
        self.action = action  # what the journal says the switch was for
        self.warm = warm  # the release still runs on the idle slot: reuse it if it is up
        self.servers = servers
        self.nginx_check_timeout = nginx_check_timeout
        self.supervisor = supervisor
        self.app = app
        self.release_id = release_id
        self.scale = load_scale(app)  # `shipyard scale` counts, over the release's own
        self.spec = scaled(release_spec(app, release_id), self.scale)
        self.tree = release_manifest(app, release_id).is_tree  # runs in its source tree
        self.config = config
        self.listen = listen
        self.live = live
        self.run_release_command = run_release_command
        self.run_setup = run_setup  # the app's first deploy here: its setup command runs once
        self.setup_ran = False  # the setup command ran and succeeded in this stage
        self.run_as = run_as
        if app.host.system_nginx and not self.spec.domains:
            raise DeployError(
                f"app {app.name} has no `domains`: the system nginx routes to apps by name.",
                hint="Set domains = ['app.example.com'] in the spec, or use nginx = 'managed'.",
            )
        old_slot = live[1] if live else None
        self.slot = "green" if old_slot == "blue" else "blue"
        self.warm_reused = False  # staged by reusing the idle slot's running release
        self._started = False  # the new slot's programs were written and started
        self._retiring: tuple[str, ReloadHandle] | None = None
        self._open_after_drain: bool | None = None  # once the old slot's drain is waited for
        self.entry = journal.Entry(
            app=app.name,
            action=action,
            phase="stage",
            to=journal.Side(release_id, self.slot),
            origin=journal.Side(*live) if live else None,
            pid=os.getpid(),
        )

    def run(self) -> Outcome:
        self.stage()
        return self.commit()

    def stage(self) -> None:
        """Everything before traffic moves: env, setup and release commands, new server up
        and healthy.

        A failure here leaves the serving release untouched and nothing of the new one running.
        """
        self._journal("stage")
        try:
            self._stage()
        except BaseException:
            if self._started or self.warm_reused:
                self.abort()
            else:
                journal.clear(self.app)  # nothing of the new release runs
            raise

    def _stage(self) -> None:
        if self.warm and self._idle_slot_runs():
            self.warm_reused = True
        else:
            self._write_env()
            faults.point("switch:after-env")
            if self.run_setup and self.spec.setup:
                self._one_off(
                    self.spec.setup,
                    what="the setup command",
                    hint="Nothing was switched: the serving release, if any, keeps serving. The "
                    "setup command has not succeeded, so the next deploy runs it again: fix it "
                    "and deploy again.",
                )
                self.setup_ran = True
            releasing = self.run_release_command and bool(self.spec.release)
            if releasing and self.spec.django is not None:
                self._start_new_while_releasing()
            elif releasing and self._can_hold():
                self._start_held_while_releasing()
            else:
                if releasing:
                    self._release_command()
                self._start_new()
            faults.point("switch:after-start")
        self._check_new_socket()
        self._check_workers()

    def commit(
        self, *, retire: bool = True, record: Callable[[Outcome], bool] | None = None
    ) -> Outcome:
        """Point nginx at the staged slot, check through nginx, then retire the old slot.

        With `retire=False` the old slot is left to `retire_old()`: traffic has moved, and
        what is left is to wait for nginx's old workers and stop the old server, which a
        command need not wait for (the caller still holds the app's lock while it runs).

        `record` saves the outcome in state.json (True: the old slot is kept warm, which
        state.json then says). Until the check through nginx passed, an interruption (Ctrl-C,
        SIGTERM, SIGHUP) switches back; from then until the outcome is recorded it waits.
        """
        previous = self.conn.read(_posix(self.app.site_file))
        self._journal("reload", previous)
        try:
            reload = self._point_nginx_at(self.slot, self.release_id)
        except BaseException:
            self.abort()
            raise
        try:
            faults.point("switch:after-reload")
            reload.wait_handed_over()  # from here on every new request meets the new config
            self._check_through_nginx()
            self._journal("record")
            faults.point("switch:before-record")
        except BaseException:
            self._switch_back()
            journal.clear(self.app)
            raise
        outcome = Outcome(self.release_id, self.slot, self.live[0] if self.live else None)
        with interrupts.held():
            self.conn.link(Symlink(f"releases/{self.release_id}", PurePosixPath(self.app.current)))
            if self.live is not None and self.live[1] != self.slot:
                self._retiring = (self.live[1], reload)
            warm = record(outcome) if record is not None else False
            self.recorded(warm=warm)
        self._boot_live()
        if retire:
            self.retire_and_clear()
        return outcome

    def _boot_live(self) -> None:
        """The new slot's processes start at boot from now on (systemd units), not the old
        slot's. Traffic has moved and is recorded: a failure here is a warning, not a failed
        deploy."""
        old = slot_names(self.procs, self.spec, self.live[1]) if self.live else []
        try:
            self.procs.boot(slot_names(self.procs, self.spec, self.slot), old)
        except ShipyardError as err:
            logging.getLogger("shipyard").warning(
                "shipyard: release %s serves, but its processes may not start at boot: %s",
                self.release_id,
                err.message,
            )

    @property
    def retiring_slot(self) -> tuple[str, str] | None:
        """(slot, release) left for `retire_old()`, if any."""
        if self._retiring is None or self.live is None:
            return None
        return self._retiring[0], self.live[0]

    def wait_drained_old(self) -> bool:
        """Until nginx's old workers have finished their requests on the old slot, or its
        drain time has passed: True if connections (WebSockets) are still open on it then,
        which only stopping it closes."""
        if self._retiring is None:
            return False
        self.supervisor.close()  # may run in a forked child: a connection of its own
        return self._drain_old(*self._retiring)

    def _idle_slot_runs(self) -> bool:
        """Every process of the release runs on the idle slot (kept warm since it served)."""
        names = slot_names(self.procs, self.spec, self.slot)
        infos = [self.procs.process(name) for name in names]
        return all(info is not None and info.state in UP_STATES for info in infos)

    def retire_old(self) -> None:
        """Once nginx's old workers have finished their requests, or the WebSockets still
        open on the old slot have had their drain time, stop the old slot gracefully (its
        server closes them, uvicorn with code 1012)."""
        if self._retiring is None:
            return
        # this may run in a forked child: a connection to supervisord of its own, not the
        # parent's copy of one
        self.supervisor.close()
        slot, reload = self._retiring
        self._drain_old(slot, reload)
        self._retiring = None
        self._retire_slot(slot)

    def _drain_old(self, slot: str, reload: ReloadHandle) -> bool:
        """The old slot's drain (drain.wait_old_slot), waited for once."""
        if self._open_after_drain is None:
            self._open_after_drain = drain.wait_old_slot(
                reload,
                self.app.socket(slot),
                self.spec.server.websocket_drain,
                self.servers.open_connections,
            )
        return self._open_after_drain

    @property
    def retiring(self) -> bool:
        """A slot is left for `retire_old()`."""
        return self._retiring is not None

    def abort(self) -> None:
        """Stop a staged slot that will not take traffic: the switch is over (and nothing
        of the new release is left for stage() to stop again)."""
        self._stop_slot(self.slot)
        journal.clear(self.app)
        self._started = self.warm_reused = False

    def _journal(self, phase: journal.Phase, previous_site: bytes | None = None) -> None:
        """Write down the step about to start, so that a later command can finish or undo
        this switch if this process dies in it (`previous_site`: the reload step's)."""
        self.entry = self.entry.at(phase)
        if phase == "reload":
            site = previous_site.decode() if previous_site is not None else None
            self.entry = replace(self.entry, previous_site=site)
        journal.write(self.app, self.entry)

    def recorded(self, *, warm: bool = False) -> None:
        """state.json names the new side: what is left is retiring the old slot, if any
        (none is left to the journal when `warm`: state.json's warm slot names it)."""
        if self.retiring and not warm:
            self._journal("retire")
        else:
            journal.clear(self.app)
        faults.point("switch:before-retire")  # a signal sent here acts once recorded

    def retire_and_clear(self) -> None:
        """retire_old, then the journal goes: the switch is over."""
        self.retire_old()
        journal.clear(self.app)

    def _write_env(self) -> None:
        env = app_environment(self.spec, self.app, self.release_id, self.config, self.tree)
        self.conn.put(
            Upload(
                render.env_file(env),
                _posix(self.app.env_file(self.slot)),
                mode=0o600,
                owner=self.run_as,
            )
        )

    def _release_command(self) -> None:
        self._one_off(
            self.spec.release,
            what="the release command",
            hint="Nothing was switched: the serving release keeps serving. Fix the "
            "command (try it with 'shipyard run -- ...') and deploy again.",
        )

    def _start_new_while_releasing(self, *, held: bool = False) -> None:
        """A Django release's server starts while its release command (`migrate`) runs:
        Django touches no database as it starts, and the new slot takes no request, not
        even the health check, before the command has succeeded; if it fails, the slot
        is stopped (docs/django.md). A `held` server starts beside the command likewise,
        its workers held back (_start_held_while_releasing)."""
        with ThreadPoolExecutor(max_workers=1) as pool:
            releasing = pool.submit(self._release_command)
            try:
                self._start_new(held=held)
            except BaseException:
                releasing.exception()  # the command runs to its end
                self.abort()
                raise
            failed = releasing.exception()
        if failed is not None:
            self.abort()
            raise failed

    def _can_hold(self) -> bool:
        """The slot runs gunicorn alone: held, it runs none of the app's code (its workers
        do), and no other process would start with it."""
        return self.spec.server.type.on_gunicorn and not programs.workers(self.spec)

    def _start_held_while_releasing(self) -> None:
        """gunicorn starts and binds the new slot's socket while the release command runs,
        but forks its workers only once the command has succeeded (its config's
        `when_ready` waits while the hold file names this process): the app's code runs
        after the command, as it would have started after it, sooner by the server's own
        start-up. If the command fails, the slot stops with no worker started."""
        hold = _posix(self.app.hold_file(self.slot))
        self.conn.put(Upload(f"{os.getpid()}\n".encode(), hold, mode=0o644))
        try:
            # the command need not wait for the slot (a release kept warm there may still
            # be stopping): both go on at once; a failure stops the slot in there, before
            # the hold goes, so no worker starts
            self._start_new_while_releasing(held=True)
        finally:
            self.conn.remove(hold)

    def _one_off(self, command: str, *, what: str, hint: str) -> None:
        """Run the spec's setup or release command in the new release's environment."""
        argv = (
            *as_user(self.run_as),
            str(self.app.host.launcher),
            str(self.app.env_file(self.slot)),
            str(self.app.workdir(self.release_id, self.tree)),
            *shlex.split(command),
        )
        result = self.conn.run(Command(argv, timeout=RELEASE_COMMAND_TIMEOUT))
        if not result.ok:
            if (broken := app_load_error(result.stdout + result.stderr)) is not None:
                what = f"{what} ({command}) could not load the app"
                hint = (
                    f"The app's code failed as the command imported it ({broken}): see the "
                    "traceback above. That is the app's (or a dependency's) error, not the "
                    "command's. Fix it and deploy again; nothing was switched."
                )
                raise CommandFailed(result, what=what, hint=hint)
            raise CommandFailed(result, what=f"{what} failed ({command})", hint=hint)

    def rescale(self) -> None:
        """Give the slot this switch runs on (made with `live` naming the other one: the live
        slot) the counts of the scale: new instances start, dropped ones stop gracefully, and
        the web server, whose program did not change, is left alone. Fails like a deploy
        when a new instance does not stay up."""
        self.procs.define(self._slot_run())
        self._mark_output()
        self.procs.apply()
        self.procs.start(slot_names(self.procs, self.spec, self.slot))
        self._check_workers()

    def _mark_output(self) -> None:
        self.procs.mark_output(self.slot, [i.name for i in programs.instances(self.spec)])

    def _slot_run(self) -> SlotRun:
        return SlotRun(self.spec, self.release_id, self.slot, self.tree, self.scale.get("web"))

    def _start_new(self, *, held: bool = False) -> None:
        """Start the slot's processes; unless `held`, with no hold file left from a command
        that was killed while it held the slot."""
        self._started = True
        names = slot_names(self.procs, self.spec, self.slot)
        # The idle slot may still be finishing requests from the release retired just before.
        for name in names:
            self.procs.wait_stopped(name, self.spec.server.graceful_timeout + 10)
        self.procs.define(self._slot_run())
        self.conn.remove(_posix(self.app.socket(self.slot)))
        if not held:
            self.conn.remove(_posix(self.app.hold_file(self.slot)))
        self._mark_output()
        self.procs.apply()
        self.procs.start(names)

    def _check_workers(self) -> None:
        """Every extra process stays up past its `startsecs` (supervisor's RUNNING), checked
        before traffic moves: one that crash-loops fails the deploy with nothing switched."""
        pending = {i.name: i for i in programs.workers(self.spec)}
        longest = max((self.spec.processes[i.kind].startsecs for i in pending.values()), default=0)
        deadline = time.monotonic() + longest + WORKER_START_GRACE
        while pending:
            for name, instance in list(pending.items()):
                info = self.procs.process(self.procs.name(instance, self.slot))
                if info is not None and info.state == "RUNNING":
                    del pending[name]
                elif info is None or info.state in FAILED_STATES:
                    self._worker_failed(instance, info)
            if not pending:
                return
            if time.monotonic() >= deadline:
                late = next(iter(pending.values()))
                self._worker_failed(late, self.procs.process(self.procs.name(late, self.slot)))
            time.sleep(0.1)

    def _worker_failed(self, instance: programs.Instance, info: ProcessInfo | None) -> None:
        state = f"{info.state}: {info.description}" if info else "its program is gone"
        tail = crash_output.excerpt(self.procs.output(self.slot, instance.name))
        raise DeployError(
            f"release {self.release_id}: process {instance.name} did not stay up ({state}).\n"
            + "\n".join(f"  | {line}" for line in tail),
            hint="Nothing was switched: the serving release keeps serving. See the process's "
            f"output above ({self.procs.log_hint(self.slot, instance.name)}).",
        )

    def _check_new_socket(self) -> None:
        program = self.procs.name(programs.Instance("web", "web"), self.slot)
        first_pid: list[int] = []

        def crashed() -> str | None:
            info = self.procs.process(program)
            if info is None:
                return f"its {self.procs.kind} process is gone"
            if info.pid:
                first_pid.append(info.pid)
            if info.state in FAILED_STATES or (first_pid and info.pid not in (0, first_pid[0])):
                return f"the app server exited ({info.state}: {info.description})"
            return None

        check = self.spec.healthcheck
        probe_socket = (
            self.servers.probe_uwsgi_socket
            if self.spec.server.type is ServerType.UWSGI
            else self.servers.probe_socket
        )
        healthy = health.Healthy.of(check)
        probe = health.wait_until(
            lambda: probe_socket(
                self.app.socket(self.slot), check.request_path, host_header(self.spec), healthy
            ),
            check.timeout,
            give_up=crashed,
        )
        if not probe.ok:
            tail = crash_output.excerpt(self.procs.output(self.slot, "web"))
            raise HealthCheckFailed(
                f"release {self.release_id} failed its health check (GET {check.request_path} on "
                f"{self.app.socket(self.slot)}): {probe.detail}.\n"
                + "\n".join(f"  | {line}" for line in tail),
                hint="Nothing was switched: the serving release keeps serving. See the app's "
                f"output above ({self.procs.log_hint(self.slot, 'web')}).",
            )

    def _point_nginx_at(self, slot: str, release_id: str) -> ReloadHandle:
        previous = self.conn.read(_posix(self.app.site_file))
        nginx = self.servers.find_nginx(self.conn.host)
        content = site_content(self.app, release_id, slot, self.listen, nginx)
        try:
            self.conn.put(Upload(content.encode(), _posix(self.app.site_file)))
            faults.point("switch:after-site-written")
            return self.servers.reload_nginx(self.conn, self.app.host, self.supervisor, drain=False)
        except KeyboardInterrupt:
            # interrupted, maybe once nginx had been told to reload: it reloads once more,
            # with the previous site, before the slot it may have pointed at goes
            self._restore_site(previous)
            self.servers.reload_nginx(self.conn, self.app.host, self.supervisor)
            raise
        except BaseException:
            self._restore_site(previous)
            raise

    def _restore_site(self, previous: bytes | None) -> None:
        if previous is None:
            self.conn.remove(_posix(self.app.site_file))
        else:
            self.conn.put(Upload(previous, _posix(self.app.site_file)))

    def _check_through_nginx(self) -> None:
        url = tls.check_url(self.app, self.listen, self.spec.healthcheck.request_path)
        # The same rule as on the socket: what makes this check mean something is the header
        # naming the new release, which nginx adds to every answer from its upstream.
        healthy = health.Healthy.of(self.spec.healthcheck)

        def check() -> health.Probe:
            probe = self.servers.probe_url(url, host_header(self.spec), healthy)
            if probe.ok and probe.release != self.release_id:
                return health.Probe(False, f"answered by release {probe.release}", probe.release)
            return probe

        probe = health.wait_until(check, self.nginx_check_timeout)
        if not probe.ok:
            raise DeployError(
                f"release {self.release_id} answered on its socket but not through nginx at "
                f"{url}: {probe.detail}.",
                hint=f"Switched back: the previous release keeps serving. Is something else "
                f"listening on {self.listen}? See {self.app.host.nginx_error_log}.",
            )

    def _switch_back(self) -> None:
        if self.live is not None:
            self._point_nginx_at(self.live[1], self.live[0]).wait_drained()
        else:
            self.conn.remove(_posix(self.app.site_file))
            self.servers.reload_nginx(self.conn, self.app.host, self.supervisor)
        self._stop_slot(self.slot)

    def _retire_slot(self, slot: str) -> None:
        # the old slot runs the processes of the release it served, not of this one
        spec = scaled(release_spec(self.app, self.live[0]), self.scale) if self.live else self.spec
        retire_procs(self.conn, self.procs, self.app, slot, slot_names(self.procs, spec, slot))

    def _stop_slot(self, slot: str) -> None:
        self.procs.remove(slot, slot_names(self.procs, self.spec, slot))


def site_content(
    app: AppLayout, release_id: str, slot: str, listen: str, nginx: NginxBinary
) -> str:
    """The app's site file pointing nginx at `release_id` on `slot`."""
    return render.site_conf(
        release_spec(app, release_id),
        app,
        release_id,
        slot,
        static_dirs(app, release_id),
        listen,
        nginx,
        tls.site(app),
        tls.behind_lb(app),
    )


# The last line of a Python traceback that says the app's own code could not be loaded.
_LOAD_ERROR = re.compile(
    r"^((?:ModuleNotFoundError|ImportError|SyntaxError|IndentationError|NameError)\b.*)$", re.M
)


def app_load_error(output: str) -> str | None:
    """The error line when `output` ends in a traceback of the app failing to load."""
    if "Traceback (most recent call last)" not in output:
        return None
    found = _LOAD_ERROR.findall(output)
    return found[-1].strip() if found else None


def retire_slot(
    conn: Connection,
    supervisor: SupervisorClient,
    app: AppLayout,
    slot: str,
    names: Iterable[str],
) -> None:
    """Stop a slot gracefully in the background: nginx no longer sends it requests, and the
    ones it has finish within its graceful timeout. Its group is removed by the next update,
    which waits for it if it is still stopping. Its env file goes too: the values it holds
    (secrets among them) may have been changed or unset since, and the next start of the
    slot writes a new one."""
    retire_procs(conn, SupervisorPrograms(conn, supervisor, app), app, slot, names)


def retire_procs(
    conn: Connection, procs: ProcessManager, app: AppLayout, slot: str, names: Iterable[str]
) -> None:
    """retire_slot, under either process manager."""
    procs.retire(slot, list(names))
    conn.remove(_posix(app.env_file(slot)))


def _posix(path: Path) -> PurePosixPath:
    return PurePosixPath(path)
