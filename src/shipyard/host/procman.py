"""What keeps an app's processes running, behind one interface: shipyard's supervisord (a
program file per slot) or systemd (a template unit per process type, an instance per slot).

The switch, `status`, `start`, `stop` and `logs` speak to a ProcessManager, so that
blue/green works alike on both: a slot's processes are defined, started, checked, and
retired gracefully once nginx no longer sends them requests.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from shipyard.host import programs, render, systemd
from shipyard.host.layout import AppLayout
from shipyard.host.nginx_workers import app_group
from shipyard.host.render import units
from shipyard.host.steps import Command, Connection, Upload, execute
from shipyard.host.supervisor import ProcessInfo, SupervisorClient
from shipyard.spec.model import Spec

Kind = Literal["supervisor", "systemd"]
# How long supervisord may take to write a dead process's last output into its log.
OUTPUT_SETTLE = 2.0


@dataclass(frozen=True)
class SlotRun:
    """What a slot's processes run: a release, the way the spec (with the host's scale)
    says."""

    spec: Spec
    release_id: str
    slot: str
    tree: bool = False  # the release runs in its copy of the source tree
    workers: int | None = None  # `shipyard scale web=N`


class ProcessManager(Protocol):
    """What host code asks of whatever keeps the app's processes running."""

    kind: Kind

    def name(self, instance: programs.Instance, slot: str) -> str:
        """The name of an instance on a slot: its supervisor program, or its unit."""
        ...

    def process(self, name: str) -> ProcessInfo | None: ...

    def define(self, run: SlotRun) -> None:
        """Write the slot's definitions (its release, its processes); nothing starts yet."""
        ...

    def apply(self) -> None:
        """Load the definitions that changed: new processes may start at once."""
        ...

    def start(self, names: Sequence[str]) -> None:
        """Start these processes (those running already are left alone)."""
        ...

    def stop(self, names: Sequence[str]) -> None:
        """Stop gracefully and wait; the definitions stay (`shipyard stop`)."""
        ...

    def wait_stopped(self, name: str, timeout: float) -> None:
        """Until a process retired before has finished its requests."""
        ...

    def retire(self, slot: str, names: Sequence[str]) -> None:
        """Forget the slot's definitions and stop its processes gracefully, not waiting."""
        ...

    def remove(self, slot: str, names: Sequence[str]) -> None:
        """Forget the slot's definitions and stop its processes now (a slot that never
        took traffic)."""
        ...

    def boot(self, live: Sequence[str], old: Sequence[str]) -> None:
        """The live slot's processes start at boot, not the old slot's."""
        ...

    def remove_all(self) -> list[str]:
        """Stop every process of the app and forget every definition (destroy); the
        processes it stopped."""
        ...

    def mark_output(self, slot: str, instances: Sequence[str]) -> None:
        """Remember where each instance's output ends, before it starts."""
        ...

    def output(self, slot: str, instance: str) -> str:
        """What an instance printed since mark_output."""
        ...

    def log_hint(self, slot: str, instance: str) -> str:
        """Where its whole output is, for a message."""
        ...


def slot_names(procs: ProcessManager, spec: Spec, slot: str) -> list[str]:
    """The slot's processes: web first, then every instance of the extra processes."""
    return [procs.name(i, slot) for i in programs.instances(spec)]


class SupervisorPrograms:
    """The app's processes as programs of shipyard's supervisord, one file per slot."""

    kind: Kind = "supervisor"

    def __init__(
        self,
        conn: Connection,
        supervisor: SupervisorClient,
        app: AppLayout,
        run_as: str | None = None,
    ) -> None:
        self.conn = conn
        self.supervisor = supervisor
        self.app = app
        self.run_as = run_as
        self._offsets: dict[tuple[str, str], int] = {}

    def name(self, instance: programs.Instance, slot: str) -> str:
        return self.app.program(instance.name, slot)

    def process(self, name: str) -> ProcessInfo | None:
        return self.supervisor.process(name)

    def define(self, run: SlotRun) -> None:
        conf = render.program_conf(
            run.spec,
            self.app,
            run.release_id,
            run.slot,
            self.app.host.launcher,
            self.run_as,
            run.tree,
            run.workers,
        )
        self.conn.put(Upload(conf.encode(), _posix(self.app.program_file(run.slot))))

    def apply(self) -> None:
        """Added groups autostart; one whose config did not change since it was retired is
        loaded but stopped (start() starts it)."""
        self.supervisor.update()

    def start(self, names: Sequence[str]) -> None:
        for name in names:
            self.supervisor.start(name)

    def stop(self, names: Sequence[str]) -> None:
        for name in names:
            self.supervisor.stop(name)

    def wait_stopped(self, name: str, timeout: float) -> None:
        self.supervisor.wait_stopped(name, timeout)

    def retire(self, slot: str, names: Sequence[str]) -> None:
        """Its group is removed by the next update, which waits for it if it is still
        stopping."""
        self.conn.remove(_posix(self.app.program_file(slot)))
        for name in names:
            self.supervisor.retire(name)

    def remove(self, slot: str, names: Sequence[str]) -> None:
        self.conn.remove(_posix(self.app.program_file(slot)))
        self.supervisor.update()

    def boot(self, live: Sequence[str], old: Sequence[str]) -> None:
        pass  # supervisord starts at boot (provision), with the programs on file: the live ones

    def remove_all(self) -> list[str]:
        """Left to destroy(), which removes the program files of both slots itself."""
        return []

    def mark_output(self, slot: str, instances: Sequence[str]) -> None:
        for instance in instances:
            log = self.conn.read(_posix(self.app.app_log(instance, slot)))
            self._offsets[slot, instance] = len(log) if log else 0

    def output(self, slot: str, instance: str) -> str:
        """Read until the log stops growing: supervisord may report a process as exited
        before it has drained the dead process's pipe into the log file."""
        path = _posix(self.app.app_log(instance, slot))
        offset = self._offsets.get((slot, instance), 0)
        deadline = time.monotonic() + OUTPUT_SETTLE
        log = self.conn.read(path) or b""
        while time.monotonic() < deadline:
            time.sleep(0.1)
            again = self.conn.read(path) or b""
            if len(again) == len(log) and len(log) > offset:
                break
            log = again
        return log[offset:].decode(errors="replace")

    def log_hint(self, slot: str, instance: str) -> str:
        return f"full log: {self.app.app_log(instance, slot)}"


class SystemdPrograms:
    """The app's processes as systemd units: `<app>-<process>@.service` templates, an
    instance per slot (and per index of an extra process), its release in a drop-in."""

    kind: Kind = "systemd"

    def __init__(
        self,
        conn: Connection,
        app: AppLayout,
        run_as: str | None,
        unit_dir: PurePosixPath = units.UNIT_DIR,
    ) -> None:
        self.conn = conn
        self.app = app
        self.user = run_as or "root"
        self.units = systemd.SystemdUnits(conn, unit_dir)
        self._since: dict[str, float] = {}
        self._startsecs: dict[str, int] = {}  # unit -> its process's startsecs

    def name(self, instance: programs.Instance, slot: str) -> str:
        return units.unit_name(self.app.name, instance, slot)

    def process(self, name: str) -> ProcessInfo | None:
        """As supervisord says RUNNING only once a process has stayed up its `startsecs`
        (a crash loop never looks started), a unit up for less is STARTING."""
        state = self.units.unit_states([name])[name]
        if state is None:
            return None
        info = state.info()
        if state.up_for(time.monotonic()) < self._startsecs.get(name, 0):
            return replace(info, state="STARTING")
        return info

    def define(self, run: SlotRun) -> None:
        """The slot's units, and none of an instance it no longer has (scaled down, or a
        process the release dropped): those stop first."""
        for instance in programs.instances(run.spec):
            process = run.spec.processes.get(instance.kind)
            self._startsecs[self.name(instance, run.slot)] = process.startsecs if process else 1
        wanted = set(slot_names(self, run.spec, run.slot))
        defined = [p.parent.name.removesuffix(".d") for p in self._dropins()]
        if stale := [
            u for u in units.slot_instances(self.app.name, run.slot, defined) if u not in wanted
        ]:
            self.units.stop(stale)
            self.units.uninstall(stale, units.DROPIN)
        self.units.install(
            units.slot_files(
                run.spec,
                self.app,
                run.release_id,
                run.slot,
                launcher=self.app.host.launcher,
                user=self.user,
                group=app_group(self.user),
                tree=run.tree,
                workers=run.workers,
            )
        )

    def apply(self) -> None:
        pass  # install() has had systemd read the units again

    def start(self, names: Sequence[str]) -> None:
        self.units.start(names)

    def stop(self, names: Sequence[str]) -> None:
        self.units.stop(names)

    def wait_stopped(self, name: str, timeout: float) -> None:
        """A stop job queued for a retired unit runs to its end before a start job."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.units.process(name)
            if info is None or info.state != "STOPPING":
                return
            time.sleep(0.05)

    def retire(self, slot: str, names: Sequence[str]) -> None:
        """Their drop-ins stay until the slot is defined again: a unit being stopped keeps
        its KillSignal= and TimeoutStopSec= (a daemon-reload without them would bring back
        systemd's defaults mid-stop)."""
        self.units.retire(names)

    def remove(self, slot: str, names: Sequence[str]) -> None:
        self.units.stop(names)
        self.units.uninstall(names, units.DROPIN)

    def boot(self, live: Sequence[str], old: Sequence[str]) -> None:
        self.units.enable_only(live, [u for u in old if u not in live])

    def remove_all(self) -> list[str]:
        names = [
            name
            for p in self._dropins()
            if units.is_apps(self.app.name, name := p.parent.name.removesuffix(".d"))
        ]
        if names:
            self.units.stop(names)
            self.conn.run(systemd.disable(names))  # an instance never enabled is no error
        for unit in names:
            self.conn.remove(_posix(Path(self.units.unit_dir) / f"{unit}.d" / units.DROPIN))
        for template in Path(self.units.unit_dir).glob(f"{self.app.name}-*@.service"):
            if units.is_apps(self.app.name, template.name):
                self.conn.remove(_posix(template))
        execute(self.conn, systemd.daemon_reload())
        return names

    def mark_output(self, slot: str, instances: Sequence[str]) -> None:
        now = time.time()
        for instance in instances:
            self._since[instance] = now

    def output(self, slot: str, instance: str) -> str:
        """The unit's journal since mark_output (journald takes the dead process's output
        from its socket at once: nothing to wait for)."""
        unit = self._unit(slot, instance)
        since = self._since.get(instance)
        argv = systemd.journal([unit], 200).argv
        if since is not None:
            argv = (*argv, f"--since=@{int(since)}")
        result = self.conn.run(Command(argv, timeout=systemd.SYSTEMCTL_TIMEOUT))
        return result.stdout if result.ok else ""

    def log_hint(self, slot: str, instance: str) -> str:
        return f"full log: journalctl -u {self._unit(slot, instance)}"

    def _dropins(self) -> list[Path]:
        """The release drop-ins on this host (read where this code runs: the host)."""
        return sorted(
            Path(self.units.unit_dir).glob(f"{self.app.name}-*@*.service.d/{units.DROPIN}")
        )

    def _unit(self, slot: str, instance: str) -> str:
        kind = instance.split("-")[0]
        return self.name(programs.Instance(kind, instance), slot)


def process_manager(
    kind: Kind,
    conn: Connection,
    supervisor: SupervisorClient,
    app: AppLayout,
    run_as: str | None,
) -> ProcessManager:
    if kind == "systemd":
        return SystemdPrograms(conn, app, run_as)
    return SupervisorPrograms(conn, supervisor, app, run_as)


def _posix(path: Path) -> PurePosixPath:
    return PurePosixPath(path)
