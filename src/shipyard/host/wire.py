"""The agent wire format: one JSON line per message, optionally followed by a files payload.

A payload is the concatenated bytes of the files its message lists (path, size, sha256), so the
receiver checks each file's digest as it arrives, before anything is unpacked or installed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Protocol

CHUNK = 1 << 20


class ProtocolError(Exception):
    """The other side sent something that is not a message, or the stream ended early."""


class Listed(Protocol):
    """A file as a message lists it (protocol.FileHeader, or a FileEntry)."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def sha256(self) -> str: ...


@dataclass(frozen=True)
class FileEntry:
    """A file to send: where it goes (relative, posix) and what it must hash to."""

    path: str
    size: int
    sha256: str
    source: Path

    def header(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


def file_entry(dest: str, source: Path, sha256: str | None = None) -> FileEntry:
    return FileEntry(dest, source.stat().st_size, sha256 or sha256_of(source), source)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def send(stream: IO[bytes], message: dict[str, Any], files: Iterable[FileEntry] = ()) -> None:
    entries = list(files)
    if entries:
        message = {**message, "files": [entry.header() for entry in entries]}
    stream.write(json.dumps(message).encode() + b"\n")
    for entry in entries:
        with entry.source.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                stream.write(chunk)
    stream.flush()


def receive(stream: IO[bytes]) -> dict[str, Any] | None:
    """The next message, or None at a clean end of stream."""
    line = stream.readline()
    if not line:
        return None
    try:
        message = json.loads(line)
    except ValueError:
        raise ProtocolError(f"not a message: {line[:200]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolError(f"not a message: {line[:200]!r}")
    return message


def safe_relative(path: str) -> PurePosixPath:
    """A payload path must stay inside the directory it is written to."""
    rel = PurePosixPath(path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ProtocolError(f"refusing payload path {path!r}")
    return rel


def receive_files(stream: IO[bytes], entries: Sequence[Listed], into: Path) -> list[Path]:
    """Write each listed file under `into`, checking its sha256.

    The whole payload is read even when a file is bad, so the stream stays in step; the
    error is raised after the last byte.
    """
    written: list[Path] = []
    corrupt: list[str] = []
    for entry in entries:
        rel = safe_relative(entry.path)
        dest = into / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        left = entry.size
        with dest.open("wb") as handle:
            while left:
                chunk = stream.read(min(CHUNK, left))
                if not chunk:
                    raise ProtocolError(f"stream ended inside {rel}")
                digest.update(chunk)
                handle.write(chunk)
                left -= len(chunk)
        if digest.hexdigest() != entry.sha256:
            corrupt.append(str(rel))
        written.append(dest)
    if corrupt:
        raise ProtocolError(f"corrupted in transit (sha256 mismatch): {', '.join(corrupt)}")
    return written
