"""An app's release history (state.json) and its deploy lock."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime

from shipyard.errors import LockHeld, ShipyardError
from shipyard.host.layout import SLOTS, AppLayout
from shipyard.host.local import write_atomic


@dataclass(frozen=True)
class ReleaseRecord:
    id: str
    created: str
    version: str = ""
    git_sha: str = ""
    deployed_by: str = ""
    deployed_at: str = ""
    status: str = "installed"  # installed | live | previous | failed | pruned
    # order of going live: timestamps have second resolution and a deploy takes less
    deployed_seq: int = 0


@dataclass(frozen=True)
class WarmSlot:
    """The previous release, still running on its slot after a switch until `until` (epoch
    seconds), so that a rollback to it meanwhile is an nginx switch only."""

    slot: str
    release: str
    until: float


@dataclass
class AppState:
    releases: list[ReleaseRecord] = field(default_factory=list)
    live: str | None = None
    slot: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)
    warm: WarmSlot | None = None

    def record(self, release_id: str) -> ReleaseRecord | None:
        return next((r for r in self.releases if r.id == release_id), None)

    def upsert(self, record: ReleaseRecord) -> None:
        self.releases = [r for r in self.releases if r.id != record.id] + [record]

    def set_status(self, release_id: str, status: str, **changes: str | int) -> None:
        if (record := self.record(release_id)) is not None:
            self.upsert(replace(record, status=status, **changes))  # type: ignore[arg-type]

    def next_seq(self) -> int:
        return max((r.deployed_seq for r in self.releases), default=0) + 1

    def idle_slot(self) -> str:
        return SLOTS[1] if self.slot == SLOTS[0] else SLOTS[0]

    def log(self, action: str, release_id: str, detail: str = "") -> None:
        self.events.append({"at": now(), "action": action, "release": release_id, "detail": detail})
        del self.events[:-50]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AppState:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError(f"it holds a JSON {type(raw).__name__}, not an object")
        return cls(
            releases=[ReleaseRecord(**r) for r in raw.get("releases", [])],
            live=raw.get("live"),
            slot=raw.get("slot"),
            events=raw.get("events", []),
            warm=WarmSlot(**raw["warm"]) if raw.get("warm") else None,
        )


def load_state(app: AppLayout) -> AppState:
    try:
        return AppState.from_json(app.state_file.read_text())
    except FileNotFoundError:
        return AppState()
    except (ValueError, TypeError, KeyError) as err:
        raise ShipyardError(
            f"{app.state_file} is corrupt ({err}).",
            hint="Restore it from a backup, or remove it and deploy again (releases stay on disk).",
        ) from None


def save_state(app: AppLayout, state: AppState) -> None:
    write_atomic(app.state_file, state.to_json().encode(), 0o644)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def holder() -> str:
    return f"{os.environ.get('USER') or os.getuid()}@{socket.gethostname()} pid {os.getpid()}"


class HeldLock:
    """An app's lock while it is held; `release()` lets it go before the holder ends (a
    child that inherited it and has more to do later)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            os.close(self.fd)  # closing drops the flock (once every copy of it is closed)


@contextmanager
def app_lock(app: AppLayout, action: str, wait: float) -> Iterator[HeldLock]:
    """One deploy at a time per app: an flock the kernel releases if the holder dies."""
    app.root.mkdir(parents=True, exist_ok=True)
    lock = HeldLock(os.open(app.lock_file, os.O_RDWR | os.O_CREAT, 0o644))
    fd = lock.fd
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    who = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
                    raise LockHeld(
                        f"app {app.name} is locked by {who}; waited {wait:g} s.",
                        hint="Wait for it to finish (or raise --wait); the lock is released "
                        "automatically when that process exits.",
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{action} by {holder()} since {now()}\n".encode(), 0)
        yield lock
    finally:
        lock.release()
