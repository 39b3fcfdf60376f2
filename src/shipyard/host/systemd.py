"""An app's processes as systemd units: systemctl and journalctl commands as argv, the
parser of `systemctl show`, and SystemdUnits, which runs them over a host's Connection."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.errors import CommandFailed, UsageError
from shipyard.host.render.units import UNIT_DIR, UnitFile
from shipyard.host.steps import Command, Connection, Upload, execute
from shipyard.host.supervisor import ProcessInfo

SHOW_PROPERTIES = (
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "MainPID",
    "NRestarts",
    "Result",
    "ActiveEnterTimestampMonotonic",
)
SYSTEMCTL_TIMEOUT = 120.0
# What systemd makes when it runs as PID 1 (sd_booted(3) looks for the same directory).
BOOTED_MARK = Path("/run/systemd/system")


# --- commands, one per systemctl or journalctl action


def daemon_reload() -> Command:
    return Command(("systemctl", "daemon-reload"), timeout=SYSTEMCTL_TIMEOUT)


def start(units: Sequence[str]) -> Command:
    """Returns once each unit's program has been executed (Type=exec)."""
    return Command(("systemctl", "start", "--", *units), timeout=SYSTEMCTL_TIMEOUT)


def stop(units: Sequence[str], *, wait: bool = True) -> Command:
    """Graceful (KillSignal=, then SIGKILL after TimeoutStopSec=); without `wait`, the stop
    is queued and the command returns at once (a retired slot finishes its requests)."""
    block = () if wait else ("--no-block",)
    return Command(("systemctl", "stop", *block, "--", *units), timeout=SYSTEMCTL_TIMEOUT)


def enable(units: Sequence[str]) -> Command:
    """The live slot's units start at boot."""
    return Command(("systemctl", "enable", "--", *units), timeout=SYSTEMCTL_TIMEOUT)


def disable(units: Sequence[str]) -> Command:
    return Command(("systemctl", "disable", "--", *units), timeout=SYSTEMCTL_TIMEOUT)


def show(units: Sequence[str]) -> Command:
    props = ",".join(SHOW_PROPERTIES)
    return Command(
        ("systemctl", "show", f"--property={props}", "--", *units), timeout=SYSTEMCTL_TIMEOUT
    )


def journal(units: Sequence[str], lines: int, follow: bool = False) -> Command:
    """The units' output as they printed it (`-o cat`), the last `lines`, then new lines as
    they come with `follow`."""
    argv = ["journalctl", "--no-pager", "-o", "cat", "-n", str(lines)]
    if follow:
        argv.append("-f")
    for unit in units:
        argv += ["-u", unit]
    return Command(tuple(argv), timeout=None if follow else SYSTEMCTL_TIMEOUT)


# --- facts


@dataclass(frozen=True)
class UnitState:
    """One unit as `systemctl show` describes it."""

    unit: str
    load: str  # loaded, not-found, masked, bad-setting...
    active: str  # active, activating, deactivating, inactive, failed, reloading
    sub: str  # running, auto-restart, dead, failed, stop-sigterm...
    pid: int
    restarts: int
    result: str  # success, exit-code, signal, timeout, start-limit-hit...
    active_since: float = 0.0  # CLOCK_MONOTONIC seconds (time.monotonic()'s clock); 0: never

    def up_for(self, now: float) -> float:
        """How long it has been active, by `now` on the same clock."""
        return now - self.active_since if self.state == "RUNNING" and self.active_since else 0.0

    @property
    def exists(self) -> bool:
        return self.load not in ("not-found", "")

    @property
    def state(self) -> str:
        """The state in supervisor's words, so that the switch and `status` read either
        process manager alike: RUNNING, STARTING, BACKOFF, STOPPING, STOPPED, FATAL."""
        if self.active in ("active", "reloading"):
            return "RUNNING"
        if self.active == "activating":
            return "BACKOFF" if self.sub == "auto-restart" else "STARTING"
        if self.active == "deactivating":
            return "STOPPING"
        if self.active == "failed":
            return "FATAL"
        return "STOPPED" if self.result == "success" else "EXITED"

    def info(self) -> ProcessInfo:
        detail = f"pid {self.pid}" if self.pid else f"{self.active} ({self.sub})"
        if self.restarts:
            detail += f", restarted {self.restarts} times"
        if self.result not in ("success", ""):
            detail += f", last result {self.result}"
        return ProcessInfo(
            name=self.unit,
            group=self.unit,
            state=self.state,
            pid=self.pid,
            description=detail,
            exitstatus=0,
        )


def parse_show(text: str) -> dict[str, UnitState]:
    """Unit -> its state, from `systemctl show --property=...` of one or more units: a
    block of NAME=value lines per unit, blocks apart by a blank line, the properties in
    systemd's order (not the order asked for)."""
    found: dict[str, UnitState] = {}
    for block in text.strip().split("\n\n"):
        values = dict(line.partition("=")[::2] for line in block.splitlines() if "=" in line)
        if "Id" not in values:
            continue
        found[values["Id"]] = UnitState(
            unit=values["Id"],
            load=values.get("LoadState", ""),
            active=values.get("ActiveState", ""),
            sub=values.get("SubState", ""),
            pid=_int(values.get("MainPID", "")),
            restarts=_int(values.get("NRestarts", "")),
            result=values.get("Result", ""),
            active_since=_int(values.get("ActiveEnterTimestampMonotonic", "")) / 1e6,
        )
    return found


def _int(value: str) -> int:
    # NRestarts is "[not set]" on a unit systemd has not loaded
    return int(value) if value.isdigit() else 0


# --- the process manager


class SystemdUnits:
    """The app's units, driven with systemctl over the host's connection (as root)."""

    def __init__(self, conn: Connection, unit_dir: PurePosixPath = UNIT_DIR) -> None:
        self.conn = conn
        self.unit_dir = unit_dir

    def install(self, files: Iterable[UnitFile]) -> bool:
        """Write the unit files that changed, then have systemd read them again; True if
        any changed."""
        changed = False
        for file in files:
            dest = self.unit_dir / file.name
            content = file.content.encode()
            if self.conn.read(dest) != content:
                self.conn.make_dirs([dest.parent])
                self.conn.put(Upload(content, dest, mode=0o644))
                changed = True
        if changed:
            execute(self.conn, daemon_reload())
        return changed

    def uninstall(self, units: Sequence[str], dropin: str) -> None:
        """Forget these instances' releases (their drop-ins); the templates stay, shared by
        the other slot."""
        for unit in units:
            self.conn.remove(self.unit_dir / f"{unit}.d" / dropin)
        execute(self.conn, daemon_reload())

    def start(self, units: Sequence[str]) -> None:
        if units:
            execute(self.conn, start(units))

    def stop(self, units: Sequence[str]) -> None:
        if units:
            execute(self.conn, stop(units))

    def retire(self, units: Sequence[str]) -> None:
        """Stop gracefully without waiting: the old slot finishes its requests."""
        if units:
            execute(self.conn, stop(units, wait=False))

    def enable_only(self, live: Sequence[str], old: Sequence[str]) -> None:
        """Boot starts the live slot, not the one it replaced."""
        if old:
            execute(self.conn, disable(old))
        if live:
            execute(self.conn, enable(live))

    def unit_states(self, units: Sequence[str]) -> dict[str, UnitState | None]:
        """Each unit's state, None for a unit systemd does not know."""
        if not units:
            return {}
        result = self.conn.run(show(units))
        if not result.ok:
            raise CommandFailed(result, what="systemd did not say how the app's units are")
        found = parse_show(result.stdout)
        return {u: found[u] if u in found and found[u].exists else None for u in units}

    def states(self, units: Sequence[str]) -> dict[str, ProcessInfo | None]:
        return {u: s.info() if s else None for u, s in self.unit_states(units).items()}

    def process(self, unit: str) -> ProcessInfo | None:
        return self.states([unit])[unit]


def check_local(process_manager: str, target: str) -> None:
    """systemd runs an app on this machine only for root, and only where it is PID 1."""
    check_here(process_manager, f"targets.{target}.process_manager = 'systemd'")


def check_here(process_manager: str, where: str) -> None:
    """As check_local, on the machine this code runs on (an ssh host's agent)."""
    if process_manager != "systemd":
        return
    if os.geteuid() != 0:
        raise UsageError(
            f"{where}: units are installed in {UNIT_DIR} and started with systemctl, which "
            "takes root; shipyard runs as an unprivileged user here.",
            hint="Run shipyard as root (an ssh target: a login user with sudo), or use "
            "process_manager = 'supervisor' (shipyard's own supervisord, no root needed).",
        )
    if not BOOTED_MARK.is_dir():
        raise UsageError(
            f"{where}: systemd is not running as PID 1 on this machine ({BOOTED_MARK} is "
            "missing: a container, or another init), so there is no systemd to start units.",
            hint="Use process_manager = 'supervisor' here.",
        )
