"""Reading an app's logs: its processes' output and nginx's access and error logs.

Under supervisord a process's output is in a file per instance and slot; under systemd it
is in journald, read with journalctl, under the same labels (`web-blue`, `worker-1-green`).
"""

from __future__ import annotations

import selectors
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.host import systemd
from shipyard.host.layout import SLOTS, AppLayout
from shipyard.host.programs import Instance, instances
from shipyard.host.render.units import unit_name
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


def journal_units(app: AppLayout, spec: Spec, process: str | None) -> dict[str, str]:
    """Label -> unit, for the processes whose logs are asked for (systemd)."""
    chosen = log_files(app, spec, process)  # checks `process`, labels as under supervisord
    found = {}
    for instance in instances(scaled(spec, load_scale(app))):
        for slot in SLOTS:
            label = f"{instance.name}-{slot}"
            if label in chosen:
                found[label] = unit_name(app.name, Instance(instance.kind, instance.name), slot)
    return found


def show(
    app: AppLayout,
    spec: Spec,
    process: str | None,
    lines: int,
    follow: bool,
    emit: Callable[[str], None],
    *,
    journald: bool = False,
) -> None:
    """The last `lines` of each log, then (with `follow`) new lines as they come; with
    `journald`, the processes' output from journald (the app's units)."""
    files = {label: path for label, path in log_files(app, spec, process).items()}
    if journald:
        units = journal_units(app, spec, process)
        files = {label: path for label, path in files.items() if label not in units}
        _show_journal(units, lines, follow, emit, files)
        return
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


def _show_journal(
    units: dict[str, str],
    lines: int,
    follow: bool,
    emit: Callable[[str], None],
    files: dict[str, Path],
) -> None:
    """journalctl per unit (`-o cat` does not say which unit a line is from), beside
    nginx's log files."""
    for label, unit in units.items():
        if lines:
            argv = systemd.journal([unit], lines).argv
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            for line in done.stdout.splitlines():
                emit(f"[{label}] {line}")
    offsets = {label: path.stat().st_size for label, path in files.items() if path.is_file()}
    for label, path in files.items():
        if path.is_file() and lines:
            for line in path.read_text(errors="replace").splitlines()[-lines:]:
                emit(f"[{label}] {line}")
    if not follow:
        return
    followers = [
        (label, subprocess.Popen(systemd.journal([unit], 0, True).argv, stdout=subprocess.PIPE))
        for label, unit in units.items()
    ]
    with selectors.DefaultSelector() as selector:
        for label, process in followers:
            assert process.stdout is not None
            selector.register(process.stdout, selectors.EVENT_READ, label)
        try:
            while True:
                for key, _ in selector.select(FOLLOW_INTERVAL):
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if line:
                        emit(f"[{key.data}] {line.decode(errors='replace').rstrip()}")
                for label, path in files.items():
                    offsets[label] = _emit_new(label, path, offsets.get(label, 0), emit)
        finally:
            for _, process in followers:
                process.terminate()
                process.wait()
