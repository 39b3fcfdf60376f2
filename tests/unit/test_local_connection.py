"""A command run over the local connection dies with the process that ran it, even when that
process is killed with SIGKILL: a killed deploy leaves no release command running."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from shipyard.host.local import LocalConnection
from shipyard.host.steps import Command, as_user

# The deploying process: runs a long command (as the app user or not) over LocalConnection.
CALLER = textwrap.dedent(
    """
    import sys
    from shipyard.host.local import LocalConnection
    from shipyard.host.steps import Command, as_user

    pidfile, run_as = sys.argv[1], sys.argv[2] or None
    script = f"echo $$ > {pidfile}; exec sleep 60"
    LocalConnection().run(Command((*as_user(run_as), "sh", "-c", script)))
    """
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _wait_for(predicate: object, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("run_as", ["", "nobody"])
def test_a_command_dies_with_its_killed_caller(run_as: str) -> None:
    if run_as and os.geteuid() != 0:
        pytest.skip("running a command as another user needs root (CI runs as root)")
    shared = Path(tempfile.mkdtemp(prefix="sy-pdeath."))  # pytest's tmp_path is root's only
    shared.chmod(0o777)  # the app user writes its pid here
    pidfile = shared / "pid"
    caller = subprocess.Popen([sys.executable, "-c", CALLER, str(pidfile), run_as])
    try:
        assert _wait_for(lambda: pidfile.is_file() and pidfile.read_text().strip(), 20)
        command = int(pidfile.read_text())
        assert _alive(command)
        caller.send_signal(signal.SIGKILL)
        caller.wait(10)
        assert _wait_for(lambda: not _alive(command), 5), "the command outlived its caller"
    finally:
        caller.kill()
        caller.wait()
        shutil.rmtree(shared)


def test_a_command_that_finishes_reports_its_output() -> None:
    result = LocalConnection().run(Command(("sh", "-c", "echo out; echo err >&2; exit 3")))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_the_app_users_prefix_names_the_user_and_the_death_signal() -> None:
    assert as_user(None) == []
    prefix = as_user("app")
    assert prefix[:4] == ["runuser", "-u", "app", "--"]
    assert prefix[4:] == ["setpriv", "--pdeathsig", "KILL", "--"]
