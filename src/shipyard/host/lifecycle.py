"""An app's release state machine on one machine: install, stage, commit, rollback, restart,
stop, start, destroy. The local target and an ssh host's agent both run it."""

from __future__ import annotations

import contextlib
import logging
import os
import pwd
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.errors import (
    DeployError,
    HealthCheckFailed,
    HostError,
    LockHeld,
    ShipyardError,
    UsageError,
)
from shipyard.events import Progress
from shipyard.host import health, journal, recover, recovery, tls
from shipyard.host.artifact import Artifact
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.procman import Kind, ProcessManager, process_manager, slot_names
from shipyard.host.python import find_python
from shipyard.host.release import (
    InstallStep,
    config_upload,
    install_steps,
    installed_releases,
    is_installed,
    layer_id,
    layer_is_complete,
    layer_steps,
    load_config,
    prune_layers,
    release_spec,
    release_workdir,
    remove_layer,
    remove_release,
)
from shipyard.host.scale import load_scale, scaled
from shipyard.host.servers import SERVERS, Servers
from shipyard.host.setup_command import SetupRecord, save_setup, setup_for
from shipyard.host.state import (
    AppState,
    HeldLock,
    ReleaseRecord,
    WarmSlot,
    app_lock,
    holder,
    load_state,
    now,
    save_state,
)
from shipyard.host.steps import Connection, InstallContext, as_user
from shipyard.host.supervisor import SupervisorClient
from shipyard.host.switch import Outcome, Switch, host_header, retire_procs
from shipyard.spec.model import Spec

DEFAULT_LOCK_WAIT = 120.0

# How a command finishes what it need not wait for (stopping the old slot once nginx's old
# workers are done): now, by default; the CLI hands it to a detached child (background.py).
Finisher = Callable[[Callable[[], None]], None]


def run_now(work: Callable[[], None]) -> None:
    work()


@dataclass(frozen=True)
class Machine:
    """The machine this code runs on, as a host of apps under one base directory: the local
    target's, or an ssh host's as its agent sees it."""

    conn: Connection
    host: HostLayout
    wheels: Path  # the wheel store releases are installed from
    listen: str
    run_as: str | None = None  # the app user, when shipyard runs as root
    servers: Servers = SERVERS  # how supervisord, nginx and the app are reached
    process_manager: Kind = "supervisor"  # what keeps the app's processes running

    def app(self, spec: Spec) -> AppLayout:
        return self.host.app(spec.name)

    def procs(self, supervisor: SupervisorClient, app: AppLayout) -> ProcessManager:
        """The app's processes, under supervisord (reached through `supervisor`) or systemd."""
        return process_manager(self.process_manager, self.conn, supervisor, app, self.run_as)


def recover_switch(target: Machine, app: AppLayout, progress: Progress | None = None) -> str | None:
    """Finish or undo the app's switch that a killed process left unfinished, if any (the
    caller holds the app's lock), and say so in one line: to `progress`, or, for a command
    that reports no progress, as a warning on the `shipyard` logger (stderr)."""
    line = recovery.recover(target, app)
    if line is not None:
        if progress is not None:
            progress.warn(line)
        else:
            logging.getLogger("shipyard").warning("shipyard: %s", line)
    return line


@contextmanager
def locked(
    target: Machine, app: AppLayout, action: str, wait: float, progress: Progress | None = None
) -> Iterator[HeldLock]:
    """The app's lock, with any unfinished switch of the app recovered first."""
    with app_lock(app, action, wait) as lock:
        recover_switch(target, app, progress)
        yield lock


def recover_if_free(target: Machine, app: AppLayout) -> None:
    """For a command that does not wait for the app's lock: recover while holding it, if it
    is free; a switch whose process holds it is not unfinished but under way."""
    if not journal.path_of(app).exists():
        return
    try:
        with app_lock(app, "recover", 0):
            recover_switch(target, app)
    except LockHeld:
        return


def app_user_here(name: str) -> str | None:
    """`name` when this process is root and can hand the app to it; None otherwise."""
    if not name or os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise HostError(
            "local" if not os.environ.get("SSH_CONNECTION") else socket.gethostname(),
            f"the app user {name!r} does not exist.",
            hint="Create it (ssh targets: 'shipyard provision TARGET'), or set the "
            "target's app_user.",
        ) from None
    return name


def ensure_secrets(target: Machine, spec: Spec, app: AppLayout, progress: Progress) -> None:
    """Generate the secrets the spec says to generate; refuse to go on without required ones."""
    config = load_config(app)
    missing = [k for k, how in spec.secrets.items() if how == "required" and k not in config]
    if missing:
        raise DeployError(
            f"app {spec.name} needs the secret(s) {', '.join(missing)}, which are not set.",
            hint=f"Set them first: shipyard config set {missing[0]}=... (nothing was deployed).",
        )
    generate = [k for k, how in spec.secrets.items() if how == "generate" and k not in config]
    if generate:
        config.update({key: secrets.token_urlsafe(32) for key in generate})
        target.conn.put(config_upload(app, config))
        progress.note(f"generated secret(s) {', '.join(generate)} (see 'shipyard config list')")


def install_release(target: Machine, spec: Spec, app: AppLayout, artifact: Artifact) -> None:
    """Install the release, and first its dependency layer when no earlier release made it."""
    if is_installed(app, artifact.id):
        return
    python = find_python(spec.python)
    store = target.wheels
    layer = layer_id(artifact, python)
    if not layer_is_complete(app, layer):
        # the dependencies' bytecode comes in the bundles sent with their wheels
        try:
            _run_install(
                layer_steps(app, artifact, store, python),
                InstallContext(target.conn, store, artifact),
            )
        except BaseException:
            remove_layer(app, layer)
            raise
    steps = install_steps(spec, app, artifact, store, python, target.run_as)
    try:
        _run_install(steps, InstallContext(target.conn, store))
    except BaseException:
        remove_release(app, artifact.id)
        raise


def _run_install(steps: Sequence[InstallStep], ctx: InstallContext) -> None:
    for step in steps:
        step.run(ctx)


def record_installed(state: AppState, artifact: Artifact) -> None:
    existing = state.record(artifact.id)
    if existing is None:
        state.upsert(
            ReleaseRecord(
                id=artifact.id,
                created=artifact.manifest.created,
                version=artifact.manifest.version,
                git_sha=artifact.manifest.git_sha,
            )
        )


def switch(
    target: Machine,
    supervisor: SupervisorClient,
    app: AppLayout,
    release_id: str,
    state: AppState,
    action: str,
    *,
    release_cmd: bool,
    config: dict[str, str] | None = None,
    finish: Finisher = run_now,
    window: float = 0.0,
    lock: HeldLock | None = None,
    setup_on: str | None = None,
    progress: Progress | None = None,
) -> Outcome:
    switch = stage(
        target,
        supervisor,
        app,
        release_id,
        state,
        action,
        release_cmd=release_cmd,
        config=config,
        setup_on=setup_on,
        progress=progress,
    )
    return commit(app, switch, state, action, finish, window=window, lock=lock)


def stage(
    target: Machine,
    supervisor: SupervisorClient,
    app: AppLayout,
    release_id: str,
    state: AppState,
    action: str,
    *,
    release_cmd: bool,
    config: dict[str, str] | None = None,
    setup_on: str | None = None,
    progress: Progress | None = None,
) -> Switch:
    """Start `release_id` on the idle slot and check it; traffic stays where it is.

    `release_cmd`: a deploy that runs the spec's commands here (its setup on the app's first
    deploy, then its release command). `setup_on`: a fleet host on which the setup is done
    for the whole target, so that it is recorded here and not run.
    """
    live = (state.live, state.slot) if state.live and state.slot else None
    command = release_spec(app, release_id).setup if release_cmd or setup_on else ""
    setup = setup_for(
        app, command, state.live, release_id, release_cmd=release_cmd, setup_on=setup_on
    )
    if setup.record is not None:
        save_setup(app, setup.record)
        if progress is not None:
            progress.note(setup.note)
    warm = state.warm
    reuse = (
        warm is not None
        and warm.slot == state.idle_slot()
        and warm.release == release_id
        and warm.until > time.time()
        and config is None
    )
    switch = Switch(
        target.conn,
        supervisor,
        app,
        release_id,
        config=load_config(app) if config is None else config,
        listen=target.listen,
        live=live,
        run_release_command=release_cmd,
        run_setup=setup.run,
        run_as=target.run_as,
        servers=target.servers,
        warm=reuse,
        action=action,
        procs=target.procs(supervisor, app),
    )
    try:
        switch.stage()
    except ShipyardError as err:
        _record_failure(app, state, release_id, action, err)
        raise
    finally:
        # recorded once it has succeeded, even if the release fails after it: never again
        if switch.setup_ran:
            save_setup(app, SetupRecord(now(), release_id, switch.spec.setup))
            if progress is not None:
                progress.note(f"ran the setup command, once for this app here: {switch.spec.setup}")
    return switch


def commit(
    app: AppLayout,
    switch: Switch,
    state: AppState,
    action: str,
    finish: Finisher = run_now,
    *,
    window: float = 0.0,
    lock: HeldLock | None = None,
) -> Outcome:
    """Move traffic to a staged release, record it as live, then retire the old slot: at
    once, or with a `window` (and the app's `lock`, which the work lets go of while it
    waits) kept warm until the window has passed."""
    release_id = switch.release_id
    warm: list[WarmSlot] = []

    def record(outcome: Outcome) -> bool:
        if state.live and state.live != release_id:
            state.set_status(state.live, "previous")
        seq = state.next_seq()
        state.set_status(
            release_id, "live", deployed_at=now(), deployed_by=holder(), deployed_seq=seq
        )
        state.live, state.slot = outcome.release, outcome.slot
        state.log(action, release_id, f"slot {outcome.slot}")
        state.warm = None  # the slot that was warm serves now, or was replaced by this release
        retiring = switch.retiring_slot
        if retiring is not None and window > 0 and lock is not None:
            state.warm = WarmSlot(retiring[0], retiring[1], time.time() + window)
            warm.append(state.warm)
        save_state(app, state)
        return bool(warm)

    try:
        outcome = switch.commit(retire=False, record=record)
    except ShipyardError as err:
        _record_failure(app, state, release_id, action, err)
        raise
    if warm and lock is not None:
        finish(lambda: keep_warm(app, switch, warm[0], lock))
    elif switch.retiring:
        finish(switch.retire_and_clear)
    return outcome


def ready_runtime(
    target: Machine, app: AppLayout, state: AppState, progress: Progress | None
) -> tuple[SupervisorClient, AppState]:
    """The base's supervisord and nginx up with current configs, what died left running taken
    over, and the app's servers such a death orphaned retired: the client, and the state as
    it is then."""
    supervisor = target.servers.ensure_runtime(target.conn, target.host, target.run_as)
    return supervisor, recover_orphans(target, supervisor, app, state, progress)


def recover_orphans(
    target: Machine,
    supervisor: SupervisorClient,
    app: AppLayout,
    state: AppState,
    progress: Progress | None = None,
) -> AppState:
    """Retire the app's servers that a supervisord that died left running (the caller holds
    the app's lock): the live one is replaced by the live release on the other slot before
    it stops, so no request fails. The state as it is then."""

    def replace() -> None:
        current = load_state(app)
        if current.live is not None:
            switch(target, supervisor, app, current.live, current, "recover", release_cmd=False)

    live = release_spec(app, state.live) if state.live else None
    timeout = (live.server.graceful_timeout if live else 30) + 10
    notes = recover.recover_app(app, supervisor, replace, timeout)
    for note in notes:
        if progress is not None:
            progress.note(note)
    return load_state(app) if notes else state


def let_warm_go(target: Machine, app: AppLayout, state: AppState) -> None:
    """A deploy is under way: the release kept warm on the idle slot will be replaced, so it
    starts stopping now, while the new one builds, instead of when its slot is needed."""
    warm = state.warm
    if warm is None:
        return
    supervisor = target.servers.supervisor(target.host)
    procs = target.procs(supervisor, app)
    if procs.kind == "systemd" or supervisor.is_running():
        names = slot_names(procs, release_spec(app, warm.release), warm.slot)
        retire_procs(target.conn, procs, app, warm.slot, names)
    state.warm = None
    save_state(app, state)


def keep_warm(app: AppLayout, switch: Switch, warm: WarmSlot, lock: HeldLock) -> None:
    """Let the old slot run until its window has passed, without holding the app's lock
    meanwhile; then retire it, unless a deploy or a rollback has taken the slot since.

    WebSockets still open on it after their drain time are not kept for the window: the
    slot stops then, which closes them, and a rollback starts it again.
    """
    if switch.wait_drained_old():
        switch.retire_old()
        state = load_state(app)
        if state.warm == warm:
            state.warm = None
            save_state(app, state)
        lock.release()
        return
    lock.release()
    time.sleep(max(0.0, warm.until - time.time()))
    with app_lock(app, "retire the previous release", wait=3600):
        state = load_state(app)
        if state.warm != warm:
            return
        if state.slot != warm.slot:
            switch.retire_old()
        state.warm = None
        save_state(app, state)


def _record_failure(
    app: AppLayout, state: AppState, release_id: str, action: str, err: ShipyardError
) -> None:
    state.set_status(release_id, "failed" if state.live != release_id else "live")
    state.log(action, release_id, f"failed: {err.message.splitlines()[0]}")
    save_state(app, state)


def prune_releases(app: AppLayout, state: AppState, keep: int) -> None:
    """Keep the live release and the newest `keep` others that are on disk."""
    on_disk = set(installed_releases(app))
    ordered = sorted(
        (r for r in state.releases if r.id in on_disk),
        key=lambda r: (r.id == state.live, r.deployed_seq, r.deployed_at or r.created),
        reverse=True,
    )
    for record in ordered[keep:]:
        if record.id != state.live:
            remove_release(app, record.id)
            state.set_status(record.id, "pruned")
    prune_layers(app)
    save_state(app, state)


def rollback(
    spec: Spec,
    target: Machine,
    progress: Progress,
    to: str | None,
    lock_wait: float = DEFAULT_LOCK_WAIT,
    finish: Finisher = run_now,
    window: float = 0.0,
) -> Outcome:
    """Switch back to an earlier release; with a `window`, the one it leaves stays warm."""
    app = target.app(spec)
    with locked(target, app, "rollback", lock_wait, progress) as lock:
        state = load_state(app)
        release_id = rollback_target(app, state, to)
        later: list[Callable[[], None]] = []
        with progress.stage(f"switch to {release_id}"):
            supervisor, state = ready_runtime(target, app, state, progress)
            outcome = switch(
                target,
                supervisor,
                app,
                release_id,
                state,
                "rollback",
                release_cmd=False,
                finish=later.append,
                window=window,
                lock=lock,
            )
        for work in later:
            finish(work)
        return outcome


def rollback_target(app: AppLayout, state: AppState, to: str | None) -> str:
    on_disk = installed_releases(app)
    if to:
        matches = [rid for rid in on_disk if rid.startswith(to)]
        if len(matches) != 1:
            known = ", ".join(on_disk) or "none"
            what = "matches several releases" if matches else "is not a release on disk"
            raise UsageError(
                f"--to {to!r} {what}; releases on disk: {known}.", hint="See 'shipyard releases'."
            )
        if matches[0] == state.live:
            raise UsageError(f"release {matches[0]} is already live.")
        return matches[0]
    candidates = sorted(
        (r for r in state.releases if r.id in on_disk and r.id != state.live and r.deployed_at),
        key=lambda r: (r.deployed_seq, r.deployed_at),
        reverse=True,
    )
    if not candidates:
        raise UsageError(
            f"app {app.name} has no earlier release on disk to roll back to.",
            hint="'shipyard releases' lists what is there.",
        )
    return candidates[0].id


def restart(
    spec: Spec,
    target: Machine,
    progress: Progress,
    config: dict[str, str] | None = None,
    action: str = "restart",
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> Outcome | None:
    """Zero-downtime restart of the live release (with new config when given).

    The config is saved only after the switch succeeded, so a config that breaks the app
    never replaces the one that works.
    """
    app = target.app(spec)
    with locked(target, app, action, lock_wait, progress):
        state = load_state(app)
        if state.live is None:
            if config is not None:
                target.conn.put(config_upload(app, config))
            return None
        with progress.stage(f"{action}: start {state.live} with the new settings"):
            supervisor, state = ready_runtime(target, app, state, progress)
            assert state.live is not None
            outcome = switch(
                target, supervisor, app, state.live, state, action, release_cmd=False, config=config
            )
        if config is not None:
            target.conn.put(config_upload(app, config))
        return outcome


def stop(spec: Spec, target: Machine) -> list[str]:
    """Stop the app's processes; also those a supervisord that died left running."""
    app = target.app(spec)
    recover_if_free(target, app)
    state = load_state(app)
    supervisor = target.servers.supervisor(target.host)
    procs = target.procs(supervisor, app)
    stopped = []
    if state.slot is not None and (procs.kind == "systemd" or supervisor.is_running()):
        stopped = _programs(procs, app, state)
        procs.stop(stopped)
    return stopped + target.servers.stop_orphans(target.host, supervisor, app.name)


def start(
    spec: Spec, target: Machine, lock_wait: float = DEFAULT_LOCK_WAIT, *, locked: bool = False
) -> list[str]:
    """Start the app's live release, and the runtime under it: what a supervisord or an nginx
    that died left running is taken over first, without a failed request. `locked`: the
    caller holds the app's lock already (an agent's session)."""
    app = target.app(spec)
    recover_if_free(target, app)
    held = contextlib.nullcontext() if locked else app_lock(app, "start", lock_wait)
    with held:
        state = load_state(app)
        if state.slot is None:
            raise UsageError(
                f"app {spec.name} has never been deployed here.", hint="Run 'shipyard deploy'."
            )
        notes: list[str] = []
        supervisor, state = ready_runtime(target, app, state, KeptNotes(notes))
        procs = target.procs(supervisor, app)
        names = _programs(procs, app, state)
        procs.start(names)
        _wait_serving(target, app, state)
    return names + notes


class KeptNotes:
    """A Progress that keeps the notes, to be shown later (start reports them with what it
    started; a deploy, from the thread that shows its stages)."""

    def __init__(self, notes: list[str]) -> None:
        self.notes = notes

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def done(self, name: str, elapsed: float) -> None:
        pass

    def note(self, text: str) -> None:
        self.notes.append(text)

    def warn(self, text: str) -> None:
        self.notes.append(text)


def _wait_serving(target: Machine, app: AppLayout, state: AppState) -> None:
    """Return once nginx answers healthy from the live release, as deploy and restart do."""
    release_id, slot = require_deployed(app, state)
    spec = release_spec(app, release_id)
    url = tls.check_url(app, target.listen, spec.healthcheck.request_path)
    healthy = health.Healthy.of(spec.healthcheck)

    def check() -> health.Probe:
        probe = target.servers.probe_url(url, host_header(spec), healthy)
        if probe.ok and probe.release != release_id:
            return health.Probe(False, f"answered by release {probe.release}", probe.release)
        return probe

    probe = health.wait_until(check, spec.healthcheck.timeout)
    if not probe.ok:
        log = app.app_log("web", slot)
        text = (target.conn.read(PurePosixPath(log)) or b"").decode(errors="replace")
        tail = text.splitlines()[-20:]
        raise HealthCheckFailed(
            f"release {release_id} was started but is not healthy at {url}: {probe.detail}.\n"
            + "\n".join(f"  | {line}" for line in tail),
            hint=f"See the app's log: {log} ('shipyard logs').",
        )


def _programs(procs: ProcessManager, app: AppLayout, state: AppState) -> list[str]:
    assert state.live is not None and state.slot is not None
    spec = scaled(release_spec(app, state.live), load_scale(app))
    return slot_names(procs, spec, state.slot)


def destroy(spec: Spec, target: Machine, purge: bool, done: list[str] | None = None) -> bool:
    """Remove the app: its processes, nginx site, releases; its shared data only with purge.
    False when there was nothing of it to remove. `done` gets the orphans it stopped (left
    running by a supervisord that died)."""
    done = [] if done is None else done
    app = target.app(spec)
    if not app.root.is_dir():
        return False
    found = any(
        path.exists() or path.is_symlink()
        for path in (
            app.state_file,
            app.releases,
            app.current,
            app.site_file,
            *(app.program_file(slot) for slot in ("blue", "green")),
            app.tls_program_file,
            *([app.shared] if purge else []),
        )
    )
    with locked(target, app, "destroy", 0):
        supervisor = target.servers.supervisor(target.host)
        running = supervisor.is_running()
        done += target.procs(supervisor, app).remove_all()
        done += target.servers.stop_orphans(target.host, supervisor, app.name)
        for slot in ("blue", "green"):
            target.conn.remove(PurePosixPath(app.program_file(slot)))
        target.conn.remove(PurePosixPath(app.tls_program_file))
        had_site = app.site_file.exists()
        target.conn.remove(PurePosixPath(app.site_file))
        if running:
            supervisor.update()
            if had_site:
                target.servers.reload_nginx(target.conn, target.host, supervisor)
        for path in (app.releases, app.layers, app.current, app.state_file, journal.path_of(app)):
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
        if purge:
            shutil.rmtree(app.shared, ignore_errors=True)
    if purge:
        app.lock_file.unlink(missing_ok=True)
        if app.root.is_dir() and not any(app.root.iterdir()):
            app.root.rmdir()
    if not any(target.host.base.glob("*/state.json")):  # no app left under this base
        done += target.servers.stop_orphans(target.host, supervisor, None)
        target.servers.stop_runtime(target.host)
    return found or bool(done)


def require_deployed(app: AppLayout, state: AppState) -> tuple[str, str]:
    if state.live is None or state.slot is None:
        raise DeployError(
            f"app {app.name} is not deployed under {app.host.base}.",
            hint="Run 'shipyard deploy' first (or set SHIPYARD_HOME to where it was deployed).",
        )
    return state.live, state.slot


def run_argv(
    app: AppLayout, state: AppState, command: list[str], run_as: str | None = None
) -> list[str]:
    """The argv of a one-off command in the live release's environment (as the app user)."""
    release_id, slot = require_deployed(app, state)
    env_file = app.env_file(slot)
    if not os.access(env_file, os.R_OK):
        raise DeployError(
            f"cannot read the app's environment {env_file}.",
            hint="Run shipyard as the user that deployed the app.",
        )
    argv = [str(app.host.launcher), str(env_file), str(release_workdir(app, release_id)), *command]
    return [*as_user(run_as), *argv]
