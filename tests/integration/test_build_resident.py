"""The app's wheel from the resident backend is the wheel a fresh interpreter builds: the
example's real flit_core backend in a real build environment, both ways."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import zipfile
from pathlib import Path

import pyproject_hooks
import pytest

from shipyard.build.appwheel import build_wheel
from shipyard.build.source import source_files
from shipyard.host.local import LocalConnection

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask-factory"


def _contents(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_resident_backend_builds_the_same_wheel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    monkeypatch.setenv("SHIPYARD_WARM_DIR", str(sockets))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")  # the same timestamps both ways
    project = tmp_path / "app"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "instance"))
    files = source_files(project, [])
    cache, conn = tmp_path / "cache", LocalConnection()
    first = build_wheel(conn, project, files, tmp_path / "fresh", cache, sys.executable)
    deadline = time.monotonic() + 60  # the first build started the environment's server
    while not list(sockets.glob("build-*.sock")):
        assert time.monotonic() < deadline, "no resident backend started"
        time.sleep(0.05)

    def no_fresh_interpreter(*args: object, **kwargs: object) -> str:
        raise AssertionError("built the usual way, not by the resident backend")

    monkeypatch.setattr(pyproject_hooks.BuildBackendHookCaller, "build_wheel", no_fresh_interpreter)
    try:
        second = build_wheel(conn, project, files, tmp_path / "resident", cache, sys.executable)
        assert second.name == first.name
        assert _contents(second) == _contents(first)
        log = next(sockets.glob("build-*.log"))
        assert "Traceback" not in log.read_text()
    finally:
        for lock in sockets.glob("build-*.lock"):
            os.kill(int(lock.read_text()), signal.SIGTERM)
