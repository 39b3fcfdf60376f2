"""Deciding how a base's runtime recovers: a pure function from what runs (orphans.Facts) to
typed actions, which recover.py carries out.

An orphan is a process that holds something of the base (a port of its nginx sites, an app's
socket, the nginx pid file) and that no live managed supervisord owns: left behind by a
supervisord or an nginx master that died. Orphans keep serving, so nothing is cut: the
managed supervisord comes back without starting a second server beside an orphan, nginx
takes over the orphans' listening sockets before they are told to quit, and an app's
orphaned server is replaced by its release on the other slot before it is stopped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from shipyard.host.orphans import Facts, Listener

NGINX_UP = ("RUNNING", "STARTING")


@dataclass(frozen=True)
class Orphan:
    """The top process of an orphaned tree (an nginx master or worker, an app server's
    master) and what it holds."""

    pid: int
    command: str
    holds: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


def _pids(orphans: tuple[Orphan, ...]) -> str:
    return ", ".join(str(o.pid) for o in orphans)


# Each action says what is wrong (`problem`, None when it is only a means: status shows the
# rest) and, once done, what was done (`describe`).


@dataclass(frozen=True)
class StartSupervisord:
    def problem(self) -> str | None:
        return "supervisord is not running"

    def describe(self) -> str:
        return "started supervisord"


@dataclass(frozen=True)
class SetAside:
    """Keep the slot's program out of the supervisord that starts: an orphan serves it, and
    a second server would take over the socket path, which the orphan deletes as it exits."""

    app: str
    slot: str

    def problem(self) -> str | None:
        return None

    def describe(self) -> str:
        return f"kept {self.app}'s {self.slot} program out of supervisord: its orphan serves"


@dataclass(frozen=True)
class HandOverNginx:
    """Start the managed nginx on the orphans' listening sockets (fd `(pid, fd)` pairs, one
    per socket), then tell the orphans (`quit`) to finish their requests and exit."""

    listeners: tuple[tuple[int, int], ...]
    quit: tuple[int, ...]
    orphans: tuple[Orphan, ...]

    def problem(self) -> str | None:
        holds = sorted({o.holds for o in self.orphans})
        who = "; ".join(str(o) for o in self.orphans)
        return f"orphaned nginx, not under supervisord, holds {', '.join(holds)}: {who}"

    def describe(self) -> str:
        holds = ", ".join(sorted({o.holds for o in self.orphans}))
        return f"took over {holds} from the orphaned nginx (pid {_pids(self.orphans)})"


@dataclass(frozen=True)
class StartNginx:
    state: str

    def problem(self) -> str | None:
        return f"the managed nginx is not running ({self.state or 'not loaded'})"

    def describe(self) -> str:
        return "started the managed nginx"


@dataclass(frozen=True)
class PortTaken:
    """A process that is not the base's nginx holds a port of its sites."""

    address: str
    pid: int
    command: str

    def problem(self) -> str | None:
        return f"{self.address} is held by pid {self.pid} ({self.command}), not shipyard's nginx"

    def describe(self) -> str:
        return self.problem() or ""


@dataclass(frozen=True)
class ReplaceApp:
    """The live slot's server is an orphan: start the live release on the other slot, point
    nginx at it, then stop the orphan (`pids`, its top processes)."""

    app: str
    slot: str
    pids: tuple[int, ...]
    orphans: tuple[Orphan, ...]

    def problem(self) -> str | None:
        who = "; ".join(str(o) for o in self.orphans)
        return f"{self.app}'s live server ({self.slot}) runs without supervisord: orphaned {who}"

    def describe(self) -> str:
        return (
            f"replaced {self.app}'s orphaned {self.slot} server (pid {_pids(self.orphans)}) "
            "by its release on the other slot, then stopped it"
        )


@dataclass(frozen=True)
class StopOrphan:
    """An orphaned server on a slot that does not take traffic: stop it gracefully (and if
    another server now owns its socket path, keep that path, which the orphan deletes)."""

    app: str
    slot: str
    pids: tuple[int, ...]
    orphans: tuple[Orphan, ...]
    keep_path: bool = False

    def problem(self) -> str | None:
        who = "; ".join(str(o) for o in self.orphans)
        return f"{self.app}'s {self.slot} server runs without supervisord (no traffic): {who}"

    def describe(self) -> str:
        return f"stopped {self.app}'s orphaned {self.slot} server (pid {_pids(self.orphans)})"


RuntimeAction = StartSupervisord | SetAside | HandOverNginx | StartNginx | PortTaken
AppAction = ReplaceApp | StopOrphan
Action = RuntimeAction | AppAction


def socket_slot(base: Path, path: str) -> tuple[str, str] | None:
    """(app, slot) of an app's socket `<base>/<app>/shared/run/<slot>.sock`."""
    parts = Path(path).relative_to(base).parts if path.startswith(f"{base}/") else ()
    if len(parts) == 4 and parts[1:3] == ("shared", "run") and parts[3].endswith(".sock"):
        return parts[0], parts[3].removesuffix(".sock")
    return None


def decide(facts: Facts, live: Mapping[str, str | None]) -> list[Action]:
    """What to do, in order, for the runtime of `facts` to be whole again. `live`: each app's
    live slot by name (None: not deployed)."""
    actions: list[Action] = []
    app_orphans = _app_orphans(facts)
    if facts.supervisord is None:
        actions += [SetAside(app, slot) for app, slot in sorted(app_orphans)]
        actions.append(StartSupervisord())
    actions += _nginx_actions(facts)
    for (app, slot), (orphans, taken) in sorted(app_orphans.items()):
        pids = tuple(o.pid for o in orphans)
        if live.get(app) == slot and not taken:
            actions.append(ReplaceApp(app, slot, pids, tuple(orphans)))
        else:
            actions.append(StopOrphan(app, slot, pids, tuple(orphans), keep_path=taken))
    return actions


def _nginx_actions(facts: Facts) -> list[Action]:
    if facts.system_nginx:
        return []
    managed = facts.nginx if facts.supervisord is not None else None
    orphans: dict[int, Orphan] = {}
    listeners: list[tuple[int, int]] = []
    taken: list[Action] = []
    for listener in facts.ports:
        foreign = [p for p in listener.pids if facts.orphaned(p, managed)]
        if not foreign:
            continue
        # another program, or another base's nginx: not this base's to take over
        not_nginx = [p for p in foreign if _comm(facts, p) != "nginx" or not _ours(facts, p)]
        if not_nginx:
            pid = min(not_nginx)
            taken.append(PortTaken(listener.address, pid, _command(facts, pid, 1000)))
            continue
        for pid in _tops(facts, set(foreign)):
            orphans.setdefault(pid, Orphan(pid, _command(facts, pid), listener.address))
        listeners.append(next(h for h in listener.holders if h[0] in foreign))
    stale = facts.nginx_pidfile
    if (
        stale is not None
        and _comm(facts, stale) == "nginx"
        and _ours(facts, stale)
        and facts.orphaned(stale, managed)
        and not any(facts.descends(stale, o) for o in orphans)
    ):
        orphans[stale] = Orphan(stale, _command(facts, stale), "the nginx pid file")
    if taken:
        return taken
    if orphans:
        return [HandOverNginx(tuple(listeners), tuple(sorted(orphans)), tuple(orphans.values()))]
    if facts.supervisord is not None and (managed is None or facts.nginx_state not in NGINX_UP):
        return [StartNginx(facts.nginx_state)]
    return []


def _app_orphans(facts: Facts) -> dict[tuple[str, str], tuple[list[Orphan], bool]]:
    """(app, slot) -> (its orphaned servers, whether a supervised server holds its path)."""
    found: dict[tuple[str, str], tuple[list[Orphan], bool]] = {}
    supervised: set[str] = set()
    by_path: dict[str, list[Listener]] = {}
    for listener in facts.sockets:
        by_path.setdefault(listener.address, []).append(listener)
        if any(facts.descends(p, facts.supervisord) for p in listener.pids):
            supervised.add(listener.address)
    for path, listeners in sorted(by_path.items()):
        where = socket_slot(facts.base, path)
        if where is None:
            continue
        for listener in listeners:
            foreign = {p for p in listener.pids if facts.orphaned(p, facts.supervisord)}
            if not foreign or listener.pids - foreign:
                continue
            orphans = [Orphan(p, _command(facts, p), path) for p in _tops(facts, foreign)]
            previous = found.get(where, ([], False))[0]
            found[where] = (previous + orphans, path in supervised)
    return found


def _tops(facts: Facts, pids: set[int]) -> list[int]:
    """The processes of `pids` whose parent is not among them (a master, not its workers)."""
    return sorted(p for p in pids if (proc := facts.procs.get(p)) is None or proc.ppid not in pids)


def _ours(facts: Facts, pid: int) -> bool:
    proc = facts.procs.get(pid)
    return proc is not None and proc.of_base


def _comm(facts: Facts, pid: int) -> str:
    proc = facts.procs.get(pid)
    return proc.comm if proc else ""


def _command(facts: Facts, pid: int, limit: int = 100) -> str:
    proc = facts.procs.get(pid)
    if proc is None:
        return "gone"
    text = " ".join((proc.cmdline or proc.comm).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
