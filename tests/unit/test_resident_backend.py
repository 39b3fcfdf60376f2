"""The resident build backend (build/backend_server.py), run for real: a server started by
this interpreter's venv with a small PEP 517 backend of the test's own, which records how
each build ran (nothing is mocked)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.build import resident

BACKEND = """
import os

BUILDS = 0  # one per build in its process: a build never sees an earlier one's state


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    global BUILDS
    BUILDS += 1
    print("building in", os.getcwd())
    if os.environ.get("TINY_FAIL"):
        raise RuntimeError("the backend failed on purpose")
    name = "tiny-" + os.environ["TINY_VERSION"] + "-py3-none-any.whl"
    with open(os.path.join(wheel_directory, name), "w") as wheel:
        wheel.write(f"{os.getpid()} {BUILDS} {os.getcwd()} {oct(os.umask(0))}")
    return name
"""
ENV = Path(sys.prefix)  # a venv: bin/python is the server's interpreter


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    sockets = tmp_path / "sockets"
    sockets.mkdir(mode=0o700)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "tinybackend.py").write_text(BACKEND)
    monkeypatch.setenv("SHIPYARD_WARM_DIR", str(sockets))
    monkeypatch.setenv("PYTHONPATH", str(modules))
    monkeypatch.setenv("TINY_VERSION", "1.0")
    yield modules
    for lock in sockets.glob("*.lock"):
        pid = int(lock.read_text() or 0)
        if pid:
            os.kill(pid, signal.SIGTERM)


def _build(tmp_path: Path) -> tuple[str | None, Path, Path]:
    source, out = tmp_path / "source", tmp_path / "out"
    source.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    return resident.build_wheel(ENV, "tinybackend", source, out), source, out


def _started(tmp_path: Path) -> None:
    """The first build starts the server and is left to the usual way."""
    assert _build(tmp_path)[0] is None
    deadline = time.monotonic() + 30
    while not list((tmp_path / "sockets").glob("*.sock")):
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)


def test_a_build_runs_in_a_child_with_the_callers_directory_and_environment(
    tmp_path: Path, backend: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _started(tmp_path)
    monkeypatch.setenv("TINY_VERSION", "2.0")  # after the server started: the caller's
    name, source, out = _build(tmp_path)
    assert name == "tiny-2.0-py3-none-any.whl"
    pid, builds, cwd, umask = (out / name).read_text().split()
    assert cwd == str(source) and int(umask, 8) == _umask()
    assert int(pid) != os.getpid()
    again, _, _ = _build(tmp_path)
    assert again == name
    second_pid, second_builds, _, _ = (out / name).read_text().split()
    assert second_pid != pid and builds == second_builds == "1"  # each from the import's state


def test_the_backends_failure_comes_back_with_what_it_printed(
    tmp_path: Path, backend: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _started(tmp_path)
    monkeypatch.setenv("TINY_FAIL", "1")
    with pytest.raises(resident.BackendFailed) as failed:
        _build(tmp_path)
    assert "the backend failed on purpose" in failed.value.error
    assert "building in" in failed.value.output


def test_a_changed_backend_module_stops_the_server(tmp_path: Path, backend: Path) -> None:
    _started(tmp_path)
    assert _build(tmp_path)[0] is not None
    module = backend / "tinybackend.py"
    module.write_text(module.read_text() + "\n# changed\n")
    assert _build(tmp_path)[0] is None  # stale: built the usual way, and a new one starts
    _started(tmp_path)
    assert _build(tmp_path)[0] is not None


def test_warm_start_off_means_no_server(
    tmp_path: Path, backend: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_WARM", "0")
    assert _build(tmp_path)[0] is None
    time.sleep(0.5)
    assert not list((tmp_path / "sockets").iterdir())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
