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
from typing import Any

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


@dataclass
class AppState:
    releases: list[ReleaseRecord] = field(default_factory=list)
    live: str | None = None
    slot: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)

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
        raw: dict[str, Any] = json.loads(text)
        return cls(
            releases=[ReleaseRecord(**r) for r in raw.get("releases", [])],
            live=raw.get("live"),
            slot=raw.get("slot"),
            events=raw.get("events", []),
        )


def load_state(app: AppLayout) -> AppState:
    try:
        return AppState.from_json(app.state_file.read_text())
    except FileNotFoundError:
        return AppState()
    except (ValueError, TypeError) as err:
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


@contextmanager
def app_lock(app: AppLayout, action: str, wait: float) -> Iterator[None]:
    """One deploy at a time per app: an flock the kernel releases if the holder dies."""
    app.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(app.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
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
        yield
    finally:
        os.close(fd)  # closing drops the flock
