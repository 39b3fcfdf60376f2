"""Finishing in a detached child: the command's output ends at once, the lock stays held."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

# A stand-in for the CLI: take the app's lock, detach some work, print, exit.
PROGRAM = """
import fcntl, os, sys, time
from pathlib import Path
from shipyard.host.background import detach

lock, marker, log, mode = sys.argv[1:5]
fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)

def work():
    print("from the child")  # must land in the log, not in the caller's pipe
    time.sleep(2.0)
    if mode == "fail":
        raise RuntimeError("retirement went wrong")
    Path(marker).write_text("done")

detach(work, Path(log))
print("parent done", flush=True)
"""


def run(tmp_path: Path, mode: str) -> tuple[subprocess.CompletedProcess[str], float, Path]:
    lock, marker, log = tmp_path / "app.lock", tmp_path / "done", tmp_path / "logs" / "bg.log"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM, str(lock), str(marker), str(log), mode],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return proc, time.monotonic() - started, marker


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def lock_is_free(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_the_caller_gets_eof_at_once_and_the_child_holds_the_lock(tmp_path: Path) -> None:
    proc, took, marker = run(tmp_path, "ok")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "parent done\n"  # nothing of the child's
    assert took < 2.0, "the caller waited for the child"
    assert not marker.exists()
    assert not lock_is_free(tmp_path / "app.lock")  # the child still works under the lock
    assert wait_for(marker.exists)
    assert wait_for(lambda: lock_is_free(tmp_path / "app.lock"))
    assert "from the child" in (tmp_path / "logs" / "bg.log").read_text()


def test_a_failure_in_the_child_is_logged_with_its_traceback(tmp_path: Path) -> None:
    proc, _, marker = run(tmp_path, "fail")
    assert proc.returncode == 0 and proc.stdout == "parent done\n"
    log = tmp_path / "logs" / "bg.log"
    assert wait_for(lambda: lock_is_free(tmp_path / "app.lock"))
    text = log.read_text()
    assert "finishing in the background failed" in text
    assert "RuntimeError: retirement went wrong" in text
    assert not marker.exists()


def test_an_unwritable_log_does_not_stop_the_work(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root writes anywhere: make the log's directory a file instead
        (tmp_path / "logs").write_text("not a directory")
    else:
        (tmp_path / "logs").mkdir(mode=0o500)
    _, _, marker = run(tmp_path, "ok")
    assert wait_for(marker.exists)
