"""The switch's journal: what a switch under way intends, written before each of its steps,
and the pure decision of how a later command finishes or undoes a switch that died.

A switch moves an app's traffic in steps (start the new slot, point nginx at it, record it
in state.json, retire the old slot); a process killed between two of them leaves nginx, the
slots and state.json disagreeing. The journal (`switch.json` beside state.json) names both
sides and the step reached. The next command on the app holds the app's lock, so the process
that wrote it is gone: it looks at what nginx actually serves (`Seen`), and `decide` says
which side keeps serving and what must change for everything to agree (`Recovery`).
recovery.py carries that out.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.local import write_atomic

# The steps of a switch, in order; each is written before it starts.
#   stage:  the new slot's env and programs are written and started (nginx untouched)
#   reload: the new site file goes in place and nginx reloads, then the check through nginx
#   record: traffic has moved and was checked; `current` and state.json are to follow
#   retire: state.json names the new side; the old slot is left to stop
Phase = Literal["stage", "reload", "record", "retire"]
PHASES: tuple[Phase, ...] = ("stage", "reload", "record", "retire")
# A config change is saved only once its switch succeeded: its new side is never kept.
CONFIG_ACTIONS = ("config set", "config unset")


@dataclass(frozen=True)
class Side:
    """A release on a slot: what nginx points at, or a side of a switch."""

    release: str
    slot: str

    def __str__(self) -> str:
        return f"{self.release} on {self.slot}"


@dataclass(frozen=True)
class Entry:
    """One switch under way, as written to the journal."""

    app: str
    action: str  # deploy, rollback, restart, config set, scale ...
    phase: Phase
    to: Side
    origin: Side | None  # what served before the switch (None: the app's first deploy)
    pid: int  # the process that runs the switch
    previous_site: str | None = None  # the site file before the reload step (None: none)

    def at(self, phase: Phase) -> Entry:
        return replace(self, phase=phase)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Entry:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("phase") not in PHASES:
            raise ValueError("not a switch journal")
        origin = raw.get("origin")
        return cls(
            app=str(raw["app"]),
            action=str(raw["action"]),
            phase=raw["phase"],
            to=Side(**raw["to"]),
            origin=Side(**origin) if origin else None,
            pid=int(raw["pid"]),
            previous_site=raw.get("previous_site"),
        )


def path_of(app: AppLayout) -> Path:
    return app.root / "switch.json"


def load(app: AppLayout) -> Entry | None:
    """The journal of an unfinished switch, if any; one that cannot be read counts as none
    (it was being written when its process died, before its first step)."""
    try:
        return Entry.from_json(path_of(app).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def write(app: AppLayout, entry: Entry) -> None:
    """Durably, before the step it names: a temp file fsynced, renamed over the journal,
    and the directory fsynced, so that after a crash the journal is the old or the new one."""
    dest = path_of(app)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(entry.to_json().encode())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_dir(dest.parent)


def clear(app: AppLayout) -> None:
    """The switch is over (done, or undone): nothing is left to recover."""
    try:
        path_of(app).unlink()
    except FileNotFoundError:
        return
    _sync_dir(app.root)


def _sync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def put_back_dead_sites(host: HostLayout) -> None:
    """Before any reload of the nginx the apps under `host` share: the site file of an app
    whose switch died in its reload step (its journal says so, and its lock is free) goes
    back to what it was, so that this reload does not move that app's traffic. That app's
    next command then finds nginx serving its old side, and undoes the rest."""
    for path in sorted(host.base.glob("*/switch.json")):
        app = host.app(path.parent.name)
        entry = load(app)
        if entry is None or entry.phase not in ("reload", "record") or entry.pid == os.getpid():
            continue
        with _taken(app) as taken:
            if not taken:
                continue  # its switch is alive: it reloads nginx itself
            if entry.previous_site is None:
                app.site_file.unlink(missing_ok=True)
            elif _read(app.site_file) != entry.previous_site.encode():
                write_atomic(app.site_file, entry.previous_site.encode(), 0o644)


@contextmanager
def _taken(app: AppLayout) -> Iterator[bool]:
    """The app's lock, held for the block if it is free (True), without waiting."""
    try:
        fd = os.open(app.lock_file, os.O_RDWR)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing drops the lock, if taken


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


# --- the decision -------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """The host as recovery finds it."""

    serving: Side | None  # what nginx serves: its answer's headers, else its site file
    site: Side | None  # what the site file on disk names
    running: frozenset[str]  # the slots whose web program runs
    live: Side | None  # what state.json names


@dataclass(frozen=True)
class Recovery:
    """What recovery does: `keep` serves afterwards, everything is made to agree with it."""

    completed: bool  # the switch's new side is kept (else: undone, or nothing to keep)
    keep: Side | None  # None: the app's first deploy undone, no site
    stop: str | None  # the slot to stop (the side not kept), if any
    write_site: bool  # the site file on disk must name `keep` (or go, with keep None)
    reload: bool  # nginx reloads (with `keep` on disk) before `stop` is stopped
    record: bool  # state.json and `current` must name `keep`
    line: str  # what was recovered, said once


def decide(entry: Entry, seen: Seen) -> Recovery:
    """Keep the side nginx serves when its slot runs; else the other side, when its slot
    runs (nginx is pointed at it); a config change is always undone while its old side runs,
    since its config was never saved."""
    to, origin = entry.to, entry.origin
    origin_runs = origin is None or origin.slot in seen.running
    to_runs = to.slot in seen.running and entry.phase != "stage"
    config = entry.action in CONFIG_ACTIONS
    keep: Side | None
    if seen.serving == to and to_runs and not (config and origin_runs and origin is not None):
        keep = to
    elif seen.serving == origin and origin_runs:
        keep = origin
    elif origin_runs:
        keep = origin  # the new side is down, unchecked, or a config change (None: no site)
    elif to_runs:
        keep = to  # the old side is down: the new one, checked on its socket, takes over
    else:
        keep = seen.serving  # nothing runs: only the records can follow nginx
    completed = keep == to
    other = origin if completed else to
    stop = other.slot if other is not None and (keep is None or other.slot != keep.slot) else None
    if keep is not None and keep not in (to, origin):
        stop = None  # nginx serves what this switch did not name: stop neither
    write_site = seen.site != keep
    moved = keep != seen.serving
    # nginx may have sent the stopped side requests: its old workers finish them first
    touched = entry.phase != "stage"
    reload = write_site or moved or (stop is not None and touched)
    return Recovery(
        completed=completed,
        keep=keep,
        stop=stop,
        write_site=write_site,
        reload=reload,
        record=seen.live != keep,
        line=_line(entry, keep, completed),
    )


def _line(entry: Entry, keep: Side | None, completed: bool) -> str:
    what = f"an interrupted {entry.action} of {entry.to.release} (at its {entry.phase} step)"
    if completed:
        return f"recovered {what}: completed, {keep} serves."
    if keep is None:
        return f"recovered {what}: undone, the app serves nothing yet (its first deploy)."
    return f"recovered {what}: undone, {keep} serves."
