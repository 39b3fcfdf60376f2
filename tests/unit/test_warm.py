"""Warm start (cli/launch.py, cli/warm.py): real servers and launchers, each test in its own
socket directory. A warm command must do exactly what the same command does cold."""

from __future__ import annotations

import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.cli.launch import read_frames
from shipyard.residents import server_key

REPO = Path(__file__).resolve().parents[2]
# the program as installed: its import path does not depend on the working directory
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))  # the venv running the tests


class Warm:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {**os.environ, "SHIPYARD_WARM_DIR": str(directory)}

    def run(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, umask: int | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SHIPYARD, *args],
            cwd=cwd,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            preexec_fn=(lambda: os.umask(umask) and None) if umask is not None else None,
        )

    def wait_for_server(self, timeout: float = 90) -> int:
        """The pid of the server once its socket answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for sock in self.dir.glob("*.sock"):
                lock = sock.with_suffix(".lock")
                if lock.exists() and lock.read_text().strip():
                    return int(lock.read_text().split()[0])
            time.sleep(0.05)
        raise AssertionError(f"no warm server in {self.dir}: {self.log()}")

    def served(self) -> int:
        return self.log().count("served pid")

    def log(self) -> str:
        return "".join(log.read_text() for log in sorted(self.dir.glob("*.log")))

    def stop(self) -> None:
        for lock in self.dir.glob("*.lock"):
            text = lock.read_text().split()
            if text and _alive(pid := int(text[0])):
                os.kill(pid, signal.SIGTERM)
                _wait_gone(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(pid), f"server {pid} still runs"


@pytest.fixture
def warm(tmp_path: Path) -> Iterator[Warm]:
    directory = tmp_path / "warm"
    directory.mkdir(mode=0o700)
    made = Warm(directory)
    yield made
    made.stop()


def _flat_project(path: Path) -> Path:
    path.mkdir()
    (path / "requirements.txt").write_text("flask\n")
    (path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    return path


def test_a_second_command_is_served_warm_and_does_what_a_cold_one_does(
    warm: Warm, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    cold = warm.run("init", "--yes", cwd=_flat_project(tmp_path / "a" / "site"))
    assert cold.returncode == 0, cold.stderr
    warm.wait_for_server()
    assert warm.served() == 0

    again = warm.run("init", "--yes", cwd=_flat_project(tmp_path / "b" / "site"))

    assert warm.served() == 1, warm.log()
    assert again.returncode == 0, again.stderr
    assert again.stdout == cold.stdout.replace(str(tmp_path / "a"), str(tmp_path / "b"))
    written = [(tmp_path / d / "site" / "shipyard.toml").read_text() for d in "ab"]
    assert written[0] == written[1]


def test_exit_codes_output_environment_and_umask_are_the_callers(
    warm: Warm, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    off = {"SHIPYARD_WARM": "0"}
    warm.run("--version", cwd=tmp_path)
    warm.wait_for_server()
    cases: list[tuple[tuple[str, ...], dict[str, str]]] = [
        (("status",), {}),  # no shipyard.toml: a usage error and its exit code
        (("nosuch",), {}),  # click's own error
        (("--help",), {"COLUMNS": "40"}),  # the environment decides the wrapping
        (("--help",), {"COLUMNS": "200"}),
    ]
    for args, env in cases:
        served = warm.served()
        hot = warm.run(*args, cwd=empty, env=env)
        assert warm.served() == served + 1, (args, warm.log())
        cold = warm.run(*args, cwd=empty, env={**env, **off})
        assert (hot.returncode, hot.stdout, hot.stderr) == (
            cold.returncode,
            cold.stdout,
            cold.stderr,
        ), args
    assert warm.run("nosuch", cwd=empty).returncode == 2
    narrow, wide = (warm.run("--help", cwd=empty, env={"COLUMNS": c}).stdout for c in ["40", "200"])
    assert narrow != wide

    project = _flat_project(tmp_path / "private")
    assert warm.run("init", "--yes", cwd=project, umask=0o077).returncode == 0
    assert (project / "shipyard.toml").stat().st_mode & 0o777 == 0o600


def test_a_changed_module_makes_the_server_step_aside(warm: Warm, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "src" / "shipyard", lib / "shipyard")
    env = {"PYTHONPATH": str(lib)}
    assert warm.run("--version", cwd=tmp_path, env=env).stdout.strip().endswith("0.1.0")
    first = warm.wait_for_server()
    init = lib / "shipyard" / "__init__.py"
    init.write_text(init.read_text().replace('"0.1.0"', '"9.9.9"'))

    changed = warm.run("--version", cwd=tmp_path, env=env)

    assert changed.stdout.strip().endswith("9.9.9")  # the new code, at once
    _wait_gone(first)
    assert warm.wait_for_server() != first  # and the cold run left a fresh server


def test_a_directory_others_can_enter_is_never_used(warm: Warm, tmp_path: Path) -> None:
    warm.dir.chmod(0o755)
    for _ in range(2):
        assert warm.run("--version", cwd=tmp_path).returncode == 0
    time.sleep(0.5)
    assert not list(warm.dir.glob("*.sock"))


def test_switched_off_it_starts_nothing(warm: Warm, tmp_path: Path) -> None:
    assert warm.run("--version", cwd=tmp_path, env={"SHIPYARD_WARM": "0"}).returncode == 0
    time.sleep(0.5)
    assert not list(warm.dir.iterdir())


def test_ctrl_c_reaches_the_command_it_serves(warm: Warm, tmp_path: Path) -> None:
    warm.run("--version", cwd=tmp_path)
    warm.wait_for_server()
    project = _flat_project(tmp_path / "p")
    # on a terminal, `init` asks before it writes: the command waits on the question
    controller, terminal = pty.openpty()
    launcher = subprocess.Popen(
        [SHIPYARD, "init"],
        cwd=project,
        env=warm.env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    seen = b""
    deadline = time.monotonic() + 30
    while b"Write " not in seen and time.monotonic() < deadline:
        seen += os.read(controller, 4096)
    assert b"Write " in seen, seen

    # A Ctrl-C that lands after the prompt is written but before the command blocks reading
    # its answer waits for the next one (Python's input() checks signals only when its read
    # is interrupted), so it is pressed again until the command ends, as a user would.
    code = None
    for _ in range(20):
        launcher.send_signal(signal.SIGINT)
        try:
            code = launcher.wait(timeout=1)
            break
        except subprocess.TimeoutExpired:
            continue
    assert code == 130
    os.close(controller)
    assert "exit 130" in warm.log()
    assert not (project / "shipyard.toml").exists()


def test_a_server_serves_only_the_requests_it_can_parse(warm: Warm, tmp_path: Path) -> None:
    import socket

    warm.run("--version", cwd=tmp_path)
    pid = warm.wait_for_server()
    sock = next(warm.dir.glob("*.sock"))
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(sock))
        answers = read_frames(conn)
        assert next(answers) == {"ready": True}
        conn.sendall(b"\x00\x00\x00\x04junk")  # no descriptors, not a message
        assert list(answers) == []  # refused: closed without an answer
    assert "refused a request" in warm.log()
    assert _alive(pid)
    assert warm.run("--version", cwd=tmp_path).returncode == 0


def test_the_servers_name_tells_interpreters_and_namespaces_apart() -> None:
    base = server_key(sys.executable, sys.path, {})
    assert server_key(sys.executable, sys.path, {}) == base
    assert server_key("/other/python", sys.path, {}) != base
    assert server_key(sys.executable, ["/x", *sys.path], {}) != base
    assert server_key(sys.executable, sys.path, {"PYTHONHASHSEED": "1"}) != base
    assert server_key(sys.executable, sys.path, {"HOME": "/elsewhere"}) == base


def test_a_stalled_server_is_passed_by_and_never_runs_the_command_too(
    warm: Warm, tmp_path: Path
) -> None:
    warm.run("--version", cwd=tmp_path)
    server = warm.wait_for_server()
    project = _flat_project(tmp_path / "p")
    os.kill(server, signal.SIGSTOP)
    try:
        started = time.monotonic()
        ran = warm.run("init", "--yes", cwd=project)  # waits for an answer, then runs here
        assert ran.returncode == 0, ran.stderr
        assert time.monotonic() - started >= 5
        written = (project / "shipyard.toml").stat().st_mtime_ns
    finally:
        os.kill(server, signal.SIGCONT)
    # the server now meets the connection the launcher gave up on: it must not run `init`
    deadline = time.monotonic() + 10
    while "refused a request" not in warm.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "refused a request" in warm.log()
    assert warm.served() == 0
    assert (project / "shipyard.toml").stat().st_mtime_ns == written
