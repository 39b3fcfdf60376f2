"""The hold in the rendered gunicorn.conf.py: its `when_ready` hook, run as gunicorn runs it,
on a real hold file, real processes and a real signal (a stand-in for gunicorn's Arbiter)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.spec.model import Spec

APP = HostLayout(Path("/srv/sy")).app("a")


class Arbiter:
    """What the hook uses of gunicorn's Arbiter: its binds, and halt()."""

    def __init__(self, binds: list[str]) -> None:
        self.cfg = type("Config", (), {"bind": binds})()
        self.halted = False

    def halt(self, reason: str | None = None, exit_status: int = 0) -> None:
        self.halted = True
        raise SystemExit(exit_status)


def _when_ready() -> Callable[[Arbiter], None]:
    spec = Spec.model_validate({"name": "a", "entry": "app:app"})
    namespace: dict[str, Any] = {}
    exec(render.server_conf_files(spec, APP, "r1")["gunicorn.conf.py"], namespace)
    hook: Callable[[Arbiter], None] = namespace["when_ready"]
    return hook


def _timed(hook: Callable[[Arbiter], None], arbiter: Arbiter) -> float:
    started = time.monotonic()
    hook(arbiter)
    return time.monotonic() - started


def test_with_no_hold_file_workers_start_at_once(tmp_path: Path) -> None:
    arbiter = Arbiter([f"unix:{tmp_path}/blue.sock", "127.0.0.1:8000"])
    assert _timed(_when_ready(), arbiter) < 0.5


def test_a_hold_naming_a_live_process_waits_until_it_is_removed(tmp_path: Path) -> None:
    hold = tmp_path / "blue.sock.hold"
    hold.write_text(f"{os.getpid()}\n")
    threading.Timer(0.5, hold.unlink).start()
    assert _timed(_when_ready(), Arbiter([f"unix:{tmp_path}/blue.sock"])) >= 0.45


def test_a_hold_left_by_a_process_that_is_gone_stops_the_server(tmp_path: Path) -> None:
    """Its deploy died before the release command had succeeded: no worker may start."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    (tmp_path / "blue.sock.hold").write_text(gone.stdout)
    arbiter = Arbiter([f"unix:{tmp_path}/blue.sock"])
    with pytest.raises(SystemExit):
        _when_ready()(arbiter)
    assert arbiter.halted


def test_a_stop_while_held_halts_the_server(tmp_path: Path) -> None:
    (tmp_path / "blue.sock.hold").write_text(f"{os.getpid()}\n")
    arbiter = Arbiter([f"unix:{tmp_path}/blue.sock"])

    def gunicorns(signum: int, frame: object) -> None:
        """gunicorn's own handler (here, a harmless one if the signal came too late)."""

    default = signal.signal(signal.SIGTERM, gunicorns)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(SystemExit):
            _when_ready()(arbiter)
        assert arbiter.halted
        assert signal.getsignal(signal.SIGTERM) is gunicorns  # handed back after the hold
    finally:
        signal.signal(signal.SIGTERM, default)
