"""The local target: this machine, under one base directory, with shipyard's own nginx and
supervisord. The deploying side (test, build) and the host side (host/lifecycle.py) run in
this one process."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from shipyard.build import artifact as artifacts
from shipyard.build.testgate import run_tests
from shipyard.errors import UsageError
from shipyard.events import Progress
from shipyard.host import lifecycle as ops
from shipyard.host import logs as applogs
from shipyard.host import runtime, tls, tlsops
from shipyard.host.artifact import MANIFEST, load_artifact, wheel_store
from shipyard.host.freeze import live_pins
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.local import LocalConnection
from shipyard.host.planning import host_plan
from shipyard.host.python import find_python
from shipyard.host.release import (
    install_steps,
    installed_releases,
    is_installed,
    layer_id,
    layer_is_complete,
    layer_steps,
    load_config,
    remove_release,
)
from shipyard.host.state import load_state, save_state
from shipyard.host.status import app_status
from shipyard.host.systemd import check_local
from shipyard.plan import Plan, build_stages
from shipyard.project.tlsfiles import tls_stage, tls_upload
from shipyard.spec.model import Spec, check_config_path
from shipyard.targets.base import (
    Background,
    Checked,
    ConfigChanged,
    Deployed,
    Destroyed,
    Frozen,
    FrozenPin,
    HostProblem,
    HostReleases,
    HostStatus,
    Process,
    ProcessesChanged,
    Provisioned,
    ReleaseRow,
    Restarted,
    RolledBack,
    Scaled,
    Status,
    TlsRenewed,
)
from shipyard.targets.dirs import default_base_dir

LOCAL = "local"


class LocalTarget:
    """`shipyard deploy` with no ssh target: everything happens on this machine."""

    def __init__(
        self,
        project: Path,
        spec: Spec,
        name: str,
        cache: Path,
        background: Background | None = None,
    ) -> None:
        target = spec.target(name)
        base = (
            Path(target.base_dir).expanduser().absolute() if target.base_dir else default_base_dir()
        )
        try:
            check_config_path(str(base), "the base directory")
        except ValueError as err:
            source = f"targets.{name}.base_dir" if target.base_dir else "SHIPYARD_HOME (or HOME)"
            raise UsageError(
                f"{err}.", hint=f"It comes from {source}: choose a plain path there."
            ) from None
        self.project = project
        self.spec = spec
        self.name = name
        self.cache = cache
        self.background = background
        self.listen = target.listen or spec.listen
        self.app_user = target.app_user
        check_local(target.process_manager, name)
        self.process_manager = target.process_manager
        self.layout = HostLayout(base, system_nginx=target.nginx == "system")
        self._machine: ops.Machine | None = None

    @property
    def machine(self) -> ops.Machine:
        """This machine as the host of the app; the app user is looked up on first use."""
        if self._machine is None:
            self._machine = ops.Machine(
                LocalConnection(),
                self.layout,
                wheel_store(self.cache),
                self.listen,
                ops.app_user_here(self.app_user),
                process_manager=self.process_manager,
            )
        return self._machine

    @property
    def app(self) -> AppLayout:
        return self.layout.app(self.spec.name)

    @property
    def url(self) -> str:
        return tls.check_url(self.app, self.listen, "/")

    def _finish(self) -> ops.Finisher:
        background = self.background
        if background is None:
            return ops.run_now
        log = str(self.app.logs / "shipyard-background.log")
        return lambda work: background(work, log)

    def _window(self) -> float:
        """How long the previous release stays warm: only where a detached child can keep
        it (the `shipyard` program); an embedded caller's command retires it before it
        returns."""
        return float(self.spec.rollback_window) if self.background is not None else 0.0

    def close(self) -> None:
        pass

    # --- deploy and its kin -------------------------------------------------------------------

    def check(self) -> Checked:
        self.app.check_socket_paths()
        runtime.find_nginx()
        https = tls_upload(self.project, self.spec, self.name, self.listen)  # files readable
        if https.settings is not None and https.settings.mode == "acme":
            tls.find_certbot()
        return Checked(self.spec.name, self.name, self.spec.entry, [HostProblem(LOCAL, "")])

    def plan(self, *, skip_tests: bool = False) -> list[Plan]:
        machine, spec = self.machine, self.spec
        inputs = artifacts.gather_inputs(machine.conn, self.project, spec, self.cache)
        release_id = inputs.artifact_id
        built = artifacts.artifacts_dir(self.cache) / release_id
        steps: list[str] | None = None
        if (built / MANIFEST).is_file() and not is_installed(self.app, release_id):
            artifact = load_artifact(built)
            python = find_python(spec.python)
            store = wheel_store(self.cache)
            found = []
            if not layer_is_complete(self.app, layer_id(artifact, python)):
                found += layer_steps(self.app, artifact, store, python)
            found += install_steps(spec, self.app, artifact, store, python)
            steps = [str(step) for step in found]
        tests = spec.tests.command if spec.tests.enabled and not skip_tests else None
        earlier = build_stages(tests, release_id, (built / MANIFEST).is_file())
        tree = inputs.choice.is_tree
        plan = host_plan(machine, spec, release_id, steps, earlier=earlier, tree=tree)
        https = tls_upload(self.project, spec, self.name, self.listen)
        return [plan.model_copy(update={"stages": [*plan.stages, tls_stage(self.app, https)]})]

    def deploy(self, progress: Progress, *, skip_tests: bool, lock_wait: float) -> Deployed:
        """Test, build, install, release command, switch, record, prune."""
        machine, spec, app = self.machine, self.spec, self.app
        app.check_socket_paths()
        runtime.find_nginx()
        https = tls_upload(self.project, spec, self.name, self.listen)
        if https.settings is not None and https.settings.mode == "acme":
            tls.find_certbot()
        with ops.locked(machine, app, "deploy", lock_wait, progress) as lock:
            ops.let_warm_go(machine, app, load_state(app))
            ops.ensure_secrets(machine, spec, app, progress)
            with progress.stage("resolve dependencies"):
                inputs = artifacts.gather_inputs(machine.conn, self.project, spec, self.cache)
                artifacts.fill_wheels(machine.conn, self.cache, inputs)
            run_gate = not skip_tests and spec.tests.enabled
            if not run_gate:
                progress.warn(
                    "tests skipped"
                    + (" (--skip-tests)" if skip_tests else " (tests.enabled = false)")
                )
            # Build and install touch nothing that serves, so they overlap the test run and
            # the runtime's check (which shows its notes once they are done); the switch
            # waits for a green suite.
            notes: list[str] = []
            with ThreadPoolExecutor(max_workers=2) as pool:
                tests = (
                    pool.submit(run_tests, machine.conn, self.project, spec, self.cache, inputs)
                    if run_gate
                    else None
                )
                ready = pool.submit(
                    ops.ready_runtime, machine, app, load_state(app), ops.KeptNotes(notes)
                )
                with progress.stage("build"):
                    artifact = artifacts.build(machine.conn, self.project, spec, self.cache, inputs)
                    progress.note(
                        f"artifact {artifact.id}: {artifact.manifest.holds}"
                        + (" (unchanged, reused)" if artifact.reused else "")
                    )
                fresh = not is_installed(app, artifact.id)
                with progress.stage("install"):
                    ops.install_release(machine, spec, app, artifact)
                if tests is not None:
                    try:
                        with progress.stage("test"):
                            progress.note(tests.result())
                    except BaseException:
                        if fresh:  # no release the state does not know is left behind
                            remove_release(app, artifact.id)
                        raise
                with progress.stage("runtime"):
                    supervisor, _ = ready.result()
                    for note in notes:
                        progress.note(note)
                    previous_tls = tls.load(app)
                    tls.apply(
                        app,
                        https.settings,
                        certificate=https.certificate,
                        key=https.key,
                        ca_bundle=https.ca_bundle,
                    )
            state = load_state(app)
            ops.record_installed(state, artifact)
            save_state(app, state)
            later: list[Callable[[], None]] = []  # run after the stages: none shows progress
            with progress.stage("release + switch"):
                outcome = ops.switch(
                    machine,
                    supervisor,
                    app,
                    artifact.id,
                    state,
                    "deploy",
                    release_cmd=True,
                    finish=later.append,
                    window=self._window(),
                    lock=lock,
                    progress=progress,
                )
            if https.settings is not None and https.settings.mode == "acme":
                with progress.stage("certificate"):
                    if tlsops.obtain(machine.conn, app, supervisor, previous_tls):
                        progress.note(f"certificate for {', '.join(spec.domains)} obtained")
            tlsops.ensure_renewal(machine.conn, app, supervisor)
            with progress.stage("prune"):
                ops.prune_releases(app, state, spec.keep)
                artifacts.prune_artifacts(self.cache, keep=max(spec.keep * 4, 20))
            finish = self._finish()
            for work in later:
                finish(work)
        return Deployed(outcome.release, self.url, [LOCAL], [])

    def rollback(self, progress: Progress, *, to: str | None, lock_wait: float) -> RolledBack:
        outcome = ops.rollback(
            self.spec, self.machine, progress, to, lock_wait, self._finish(), self._window()
        )
        return RolledBack([outcome.release], [LOCAL])

    def restart(self, progress: Progress, *, lock_wait: float) -> Restarted:
        outcome = ops.restart(self.spec, self.machine, progress, lock_wait=lock_wait)
        if outcome is None:
            raise UsageError(
                f"app {self.spec.name} is not deployed.", hint="Run 'shipyard deploy'."
            )
        return Restarted(outcome.release, [LOCAL], outcome.slot)

    def scale(self, progress: Progress, changes: dict[str, int], *, lock_wait: float) -> Scaled:
        from shipyard.host.rescale import scale

        done = scale(self.spec, self.machine, changes, progress, lock_wait)
        return Scaled(done.scale, [LOCAL], done.restarted)

    # --- what is there ------------------------------------------------------------------------

    def status(self) -> Status:
        report = app_status(self.spec, self.machine)
        host = HostStatus(
            LOCAL,
            release=report["release"],
            slot=report["slot"],
            healthy=report["healthy"],
            health=report["health"],
            serving_release=report["serving_release"],
            processes=[Process(**proc) for proc in report["processes"]],
            scale=report["scale"],
            runtime=report["runtime"],
        )
        return Status(self.spec.name, self.name, report["url"], [host])

    def releases(self) -> list[HostReleases]:
        state = load_state(self.app)
        on_disk = set(installed_releases(self.app))
        rows = [
            ReleaseRow(
                r.id,
                r.version,
                r.git_sha,
                r.status,
                r.deployed_at,
                r.id in on_disk,
                r.id == state.live,
            )
            for r in reversed(state.releases)
        ]
        return [HostReleases(LOCAL, rows)]

    def freeze(self) -> list[Frozen]:
        found = live_pins(self.app)
        pins = [FrozenPin(pin.name, pin.version, pin.sha256) for pin in found.pins]
        return [Frozen(LOCAL, found.release, pins)]

    def logs(
        self, process: str | None, lines: int, follow: bool, emit: Callable[[str], None]
    ) -> None:
        journald = self.process_manager == "systemd"
        applogs.show(self.app, self.spec, process, lines, follow, emit, journald=journald)

    def run_argv(self, command: list[str], host: str | None) -> list[str]:
        if host not in (None, LOCAL):
            raise UsageError(f"--host {host!r}: target {self.name} is this machine only.")
        app = self.app
        return ops.run_argv(app, load_state(app), command, self.machine.run_as)

    # --- config and processes -----------------------------------------------------------------

    def config_get(self) -> dict[str, str]:
        return load_config(self.app)

    def config_set(self, progress: Progress, updates: dict[str, str]) -> ConfigChanged:
        new = {**load_config(self.app), **updates}
        outcome = ops.restart(self.spec, self.machine, progress, config=new, action="config set")
        return ConfigChanged(sorted(updates), [LOCAL], outcome.release if outcome else None)

    def config_unset(self, progress: Progress, keys: list[str]) -> ConfigChanged:
        current = load_config(self.app)
        missing = [k for k in keys if k not in current]
        if missing:
            raise UsageError(
                f"not set: {', '.join(missing)}.", hint="'shipyard config list' shows what is."
            )
        new = {k: v for k, v in current.items() if k not in keys}
        outcome = ops.restart(self.spec, self.machine, progress, config=new, action="config unset")
        return ConfigChanged(list(keys), [LOCAL], outcome.release if outcome else None)

    def start(self) -> ProcessesChanged:
        return ProcessesChanged({LOCAL: ops.start(self.spec, self.machine)})

    def stop(self) -> ProcessesChanged:
        return ProcessesChanged({LOCAL: ops.stop(self.spec, self.machine)})

    def destroy(self, *, purge: bool) -> Destroyed:
        stopped: list[str] = []
        if not ops.destroy(self.spec, self.machine, purge, stopped):
            return Destroyed(self.spec.name, [], None, absent=[LOCAL])
        kept = None if purge else str(self.app.shared)
        return Destroyed(self.spec.name, [LOCAL], kept, stopped=stopped)

    def tls_renew(self, *, force: bool, lock_wait: float) -> TlsRenewed:
        machine, app = self.machine, self.app
        settings = tls.load(app)
        if settings is None or settings.mode != "acme":
            raise UsageError(
                f"app {self.spec.name} has no ACME certificate on target {self.name}: "
                "nothing to renew.",
                hint="Set [tls] mode = 'acme' and deploy; a certificate you provide "
                "(mode = 'files') is renewed by deploying a new one.",
            )
        with ops.locked(machine, app, "tls renew", lock_wait):
            supervisor = runtime.ensure_runtime(machine.conn, machine.host, machine.run_as)
            done = tlsops.renew(machine.conn, app, supervisor, force=force)
        return TlsRenewed({LOCAL: done.renewed}, {LOCAL: done.fingerprint or ""})

    def provision(self, progress: Progress, *, dry_run: bool) -> Provisioned:
        raise UsageError(
            f"target {self.name!r} is the local machine: nothing to provision.",
            hint="'shipyard deploy' sets up the local runtime by itself.",
        )
