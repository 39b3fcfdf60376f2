"""Hermetic tests: no developer HOME, XDG dirs or shipyard env leak into a test."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def warm_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The warm servers' sockets of this run (cli/warm.py), never the user's own, from the
    session's start (fixtures of wider scope run the program too); the servers the tests
    left are stopped at the end."""
    path = tmp_path_factory.mktemp("warm")
    path.chmod(0o700)
    before = os.environ.get("SHIPYARD_WARM_DIR")
    os.environ["SHIPYARD_WARM_DIR"] = str(path)
    yield path
    stop_warm_servers(path)
    if before is None:
        os.environ.pop("SHIPYARD_WARM_DIR", None)
    else:
        os.environ["SHIPYARD_WARM_DIR"] = before


def stop_warm_servers(directory: Path) -> None:
    pids = []
    for lock in directory.glob("*.lock"):
        with contextlib.suppress(OSError, ValueError):
            pids.append(int(lock.read_text().split()[0]))
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@pytest.fixture(autouse=True)
def _hermetic_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, warm_dir: Path
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "SHIPYARD_HOME", "SHIPYARD_CACHE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("XDG_RUNTIME_DIR", "SHIPYARD_WARM", "SHIPYARD_WARM_LINGER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SHIPYARD_WARM_DIR", str(warm_dir))


@pytest.fixture
def example_spec_dict() -> dict[str, object]:
    return {
        "name": "flaskr",
        "entry": "flaskr:create_app()",
        "release": "flask --app flaskr init-db",
        "static": {"/static": "flaskr/static"},
        "healthcheck": {"path": "/health"},
    }


REPO = Path(__file__).resolve().parent.parent
