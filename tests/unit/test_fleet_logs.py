"""Following a fleet's logs over fake ssh connections whose log processes run here."""

from __future__ import annotations

import signal
from pathlib import Path

from fleetfakes import FakeSSH, example_spec, ssh_fleet

from shipyard.fleet import fleet as fleets

SPEC = example_spec()


def _conns(tmp_path: Path, *names: str) -> dict[str, FakeSSH]:
    return {name: FakeSSH(name, tmp_path) for name in names}


def test_follow_logs_prefixes_every_line_with_its_host_and_skips_the_lb(tmp_path: Path) -> None:
    conns = _conns(tmp_path, "web1", "web2", "lb1")
    conns["web1"].local = ["printf", "GET / 200\\nGET /x 404\\n"]
    conns["web2"].local = ["printf", "booting\\n\\377bad byte\\n"]
    lines: list[str] = []
    fleet = ssh_fleet(tmp_path, conns, lb="lb1")
    fleets.follow_logs(SPEC, fleet, "worker", 50, True, lines.append)
    assert [line for line in lines if line.startswith("web1 ")] == [
        "web1 GET / 200",
        "web1 GET /x 404",
    ]
    assert [line for line in lines if line.startswith("web2 ")] == [
        "web2 booting",
        "web2 \ufffdbad byte",
    ]
    assert len(lines) == 4 and conns["lb1"].popened == []
    (command,) = conns["web1"].popened
    assert command.argv[-10:] == (
        "logs",
        "--base",
        "/srv/shipyard",
        "--app",
        "flaskr",
        "--lines",
        "50",
        "--process",
        "worker",
        "--follow",
    )


def test_follow_logs_without_a_process_or_follow_asks_for_the_tail_only(tmp_path: Path) -> None:
    conns = _conns(tmp_path, "web1")
    fleets.follow_logs(SPEC, ssh_fleet(tmp_path, conns), None, 20, False, lambda line: None)
    (command,) = conns["web1"].popened
    assert command.argv[-2:] == ("--lines", "20") and "--process" not in command.argv


def test_a_log_process_still_running_once_its_output_ended_is_stopped(tmp_path: Path) -> None:
    conns = _conns(tmp_path, "web1")
    # prints, closes its stdout, and would linger long after that
    conns["web1"].local = ["sh", "-c", "echo up; exec >&-; exec sleep 60"]
    lines: list[str] = []
    fleets.follow_logs(SPEC, ssh_fleet(tmp_path, conns), None, 10, True, lines.append)
    assert lines == ["web1 up"]
    assert conns["web1"].procs[0].returncode == -signal.SIGTERM


def test_a_host_whose_logs_fail_says_so_and_its_stderr_is_read(tmp_path: Path) -> None:
    conns = _conns(tmp_path, "web1", "web2")
    # more on stderr than a pipe holds: unread, it would stall the host's process
    noisy = "i=0; while [ $i -lt 3000 ]; do echo 'noise noise noise noise' >&2; i=$((i+1)); done"
    conns["web1"].local = ["sh", "-c", f"{noisy}; echo 'no such app: flaskr' >&2; exit 3"]
    conns["web2"].local = ["printf", "GET / 200\\n"]
    lines: list[str] = []
    fleets.follow_logs(SPEC, ssh_fleet(tmp_path, conns), None, 5, False, lines.append)
    assert "web1 (stderr) no such app: flaskr" in lines
    assert lines[-1] == "web1 (logs ended with exit code 3)"
    assert "web2 GET / 200" in lines
    assert not any(line.startswith("web2 (logs ended") for line in lines)
