"""Reading an app's logs: its processes' output and nginx's access and error logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.host.layout import SLOTS, AppLayout
from shipyard.host.programs import instances
from shipyard.host.scale import load_scale, scaled
from shipyard.spec.model import Spec

FOLLOW_INTERVAL = 0.25


def log_files(app: AppLayout, spec: Spec, process: str | None) -> dict[str, Path]:
    """Label -> file for the logs asked for (all of them when `process` is None)."""
    files: dict[str, Path] = {}
    for name in (i.name for i in instances(scaled(spec, load_scale(app)))):
        for slot in SLOTS:
            files[f"{name}-{slot}"] = app.app_log(name, slot)
    files["access"] = app.access_log
    files["error"] = app.error_log
    if process is None:
        return files
    chosen = {label: path for label, path in files.items() if label.split("-")[0] == process}
    if not chosen:
        known = ", ".join(sorted({label.split("-")[0] for label in files}))
        raise UsageError(f"no log for process {process!r}; known: {known}.")
    return chosen


def show(
    app: AppLayout,
    spec: Spec,
    process: str | None,
    lines: int,
    follow: bool,
    emit: Callable[[str], None],
) -> None:
    files = {label: path for label, path in log_files(app, spec, process).items()}
    offsets: dict[str, int] = {}
    for label, path in files.items():
        if not path.is_file():
            continue
        text = path.read_bytes()
        offsets[label] = len(text)
        for line in text.decode(errors="replace").splitlines()[-lines:] if lines else []:
            emit(f"[{label}] {line}")
    while follow:
        time.sleep(FOLLOW_INTERVAL)
        for label, path in files.items():
            offsets[label] = _emit_new(label, path, offsets.get(label, 0), emit)


def _emit_new(label: str, path: Path, offset: int, emit: Callable[[str], None]) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size < offset:  # rotated
        offset = 0
    if size == offset:
        return offset
    with path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read(size - offset)
    end = chunk.rfind(b"\n")
    if end < 0:  # no complete line yet
        return offset
    for line in chunk[:end].decode(errors="replace").split("\n"):
        emit(f"[{label}] {line}")
    return offset + end + 1
