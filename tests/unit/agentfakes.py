"""An agent session on a fake host (tests/unit/fakes.py), and what a deploying machine sends it:
artifacts, their payloads and requests followed by files."""

from __future__ import annotations

import io
import os
from pathlib import Path, PurePosixPath
from typing import Any

from fakes import FakeHost, RecordingConnection
from hostkit import LISTEN

from shipyard.host import agent, wire
from shipyard.host import protocol as p
from shipyard.host.artifact import MANIFEST, SPEC, TREE, Manifest, WheelRef
from shipyard.host.layout import HostLayout
from shipyard.spec.model import Spec

APP_WHEEL = "flaskr-1.0-py3-none-any.whl"


def fake_session(host: FakeHost, stream: bytes = b"") -> agent.Session:
    """A session whose connection and servers are the fake host's."""
    return agent.Session(
        host.layout.base, LISTEN, io.BytesIO(stream), conn=host.conn, servers=host.servers
    )


def handle_with_files(
    session: agent.Session, request: p.Request[Any], files: list[wire.FileEntry]
) -> p.Reply:
    """Send `request` and its payload as the client does, then let the session handle it."""
    stream = io.BytesIO()
    wire.send(stream, request.model_dump(mode="json", exclude={"files"}), files)
    stream.seek(0)
    session.stream = stream
    return session.handle(p.parse_request(wire.receive(stream) or {}))


def artifact_tree(
    root: Path,
    release_id: str,
    spec: Spec,
    deps: dict[str, bytes] | None = None,
    app_wheel: bytes = b"the app's wheel",
    created: str = "2026-01-01T00:00:00Z",
    tree: dict[str, bytes] | None = None,
) -> Path:
    """What the deploying machine sends for a release, as files under `root`: the dependency
    wheels under wheels/, the artifact (manifest, spec, app wheel or, with `tree`, the app's
    source files in src/) under artifact/."""
    deps = deps or {}
    (root / "wheels").mkdir(parents=True, exist_ok=True)
    for name, content in deps.items():
        (root / "wheels" / name).write_bytes(content)
    artifact = root / "artifact"
    wheel: WheelRef | None = None
    for rel, content in (tree or {}).items():
        (artifact / TREE / rel).parent.mkdir(parents=True, exist_ok=True)
        (artifact / TREE / rel).write_bytes(content)
    if tree is None:
        (artifact / "app").mkdir(parents=True, exist_ok=True)
        (artifact / "app" / APP_WHEEL).write_bytes(app_wheel)
        wheel = WheelRef(APP_WHEEL, wire.sha256_of(artifact / "app" / APP_WHEEL))
    manifest = Manifest(
        id=release_id,
        app=spec.name,
        created=created,
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="abc123",
        app_wheel=wheel,
        wheels=[WheelRef(name, wire.sha256_of(root / "wheels" / name)) for name in deps],
        tree={rel: wire.sha256_of(artifact / TREE / rel) for rel in tree or {}},
    )
    (artifact / MANIFEST).write_text(manifest.to_json())
    (artifact / SPEC).write_text(spec.model_dump_json())
    return root


def entries(root: Path, only: set[str] | None = None) -> list[wire.FileEntry]:
    """The payload of a tree from `artifact_tree`: every file (or the `only` ones), by path."""
    found = sorted(p for p in root.rglob("*") if p.is_file())
    rels = [(p.relative_to(root).as_posix(), p) for p in found]
    return [wire.file_entry(rel, path) for rel, path in rels if only is None or rel in only]


def put_artifact(host: HostLayout, release_id: str, spec: Spec, mtime: float | None = None) -> Path:
    """An artifact as a receive leaves it in artifacts/<id>; its wheels are not in the store."""
    tree = artifact_tree(host.runtime / "sources" / release_id, release_id, spec)
    final = host.artifacts / release_id
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tree / "artifact", final)
    if mtime is not None:
        os.utime(final / MANIFEST, (mtime, mtime))
    return final


class GuardedConnection(RecordingConnection):
    """A fake connection that may not read some paths (root-owned files, say)."""

    def __init__(self, journal: list[str], unreadable: set[PurePosixPath]) -> None:
        super().__init__(journal)
        self.unreadable = unreadable

    def read(self, path: PurePosixPath) -> bytes | None:
        if path in self.unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return super().read(path)
