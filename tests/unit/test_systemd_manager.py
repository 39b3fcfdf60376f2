"""The systemd process manager: the systemctl and journalctl commands it runs (exact argv,
over a recording connection: no systemd runs as PID 1 here) and its parser of
`systemctl show`."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from fakes import RecordingConnection, UnexpectedCommand

from shipyard.errors import CommandFailed, UsageError
from shipyard.host import systemd
from shipyard.host.render.units import UnitFile
from shipyard.host.systemd import SystemdUnits, UnitState, parse_show

PROPS = "--property=Id,LoadState,ActiveState,SubState,MainPID,NRestarts,Result"

# `systemctl show` of three units in systemd 252's layout (Debian 12): a block per unit in
# the order asked, each property on its own line in systemd's order, blocks apart by a blank
# line; an instance systemd has no file for is "not-found".
SHOW = """\
MainPID=4121
Result=success
NRestarts=0
Id=shop-web@blue.service
LoadState=loaded
ActiveState=active
SubState=running

MainPID=0
Result=exit-code
NRestarts=3
Id=shop-worker@blue.service
LoadState=loaded
ActiveState=activating
SubState=auto-restart

MainPID=0
Result=success
NRestarts=[not set]
Id=shop-web@green.service
LoadState=not-found
ActiveState=inactive
SubState=dead
"""


def test_show_output_is_read_by_name_whatever_the_order() -> None:
    states = parse_show(SHOW)
    assert states["shop-web@blue.service"] == UnitState(
        "shop-web@blue.service", "loaded", "active", "running", 4121, 0, "success"
    )
    worker = states["shop-worker@blue.service"]
    assert (worker.pid, worker.restarts, worker.result) == (0, 3, "exit-code")
    assert not states["shop-web@green.service"].exists
    assert states["shop-web@green.service"].restarts == 0


@pytest.mark.parametrize(
    ("active", "sub", "result", "state"),
    [
        ("active", "running", "success", "RUNNING"),
        ("reloading", "reload", "success", "RUNNING"),
        ("activating", "start", "success", "STARTING"),
        ("activating", "auto-restart", "exit-code", "BACKOFF"),
        ("deactivating", "stop-sigterm", "success", "STOPPING"),
        ("failed", "failed", "start-limit-hit", "FATAL"),
        ("inactive", "dead", "success", "STOPPED"),
        ("inactive", "dead", "exit-code", "EXITED"),
    ],
)
def test_unit_states_read_as_supervisors(active: str, sub: str, result: str, state: str) -> None:
    """The switch and `status` take either process manager's states in the same words."""
    assert UnitState("u", "loaded", active, sub, 0, 0, result).state == state


def test_states_ask_systemctl_show_once_for_every_unit() -> None:
    conn = RecordingConnection()
    units = ["shop-web@blue.service", "shop-worker@blue.service", "shop-web@green.service"]
    conn.answer(["systemctl", "show"], stdout=SHOW)
    states = SystemdUnits(conn).states(units)
    assert conn.commands == [("systemctl", "show", PROPS, "--", *units)]
    web = states["shop-web@blue.service"]
    assert web is not None and (web.state, web.pid) == ("RUNNING", 4121)
    worker = states["shop-worker@blue.service"]
    assert worker is not None and worker.state == "BACKOFF"
    assert "restarted 3 times" in worker.description
    assert states["shop-web@green.service"] is None


def test_a_failing_systemctl_show_is_an_error_not_an_absent_unit() -> None:
    conn = RecordingConnection()
    conn.answer(["systemctl", "show"], exit_code=1, stdout="Failed to connect to bus")
    with pytest.raises(CommandFailed, match="did not say how the app's units are"):
        SystemdUnits(conn).process("shop-web@blue.service")


def test_start_stop_and_retire_are_systemctl_argv() -> None:
    conn = RecordingConnection()
    conn.answer(["systemctl"])
    manager = SystemdUnits(conn)
    blue = ["shop-web@blue.service", "shop-worker@blue.service"]
    manager.start(blue)
    manager.stop(blue)
    manager.retire(blue)
    manager.enable_only(blue, ["shop-web@green.service"])
    manager.start([])  # nothing to start: no command
    assert conn.commands == [
        ("systemctl", "start", "--", *blue),
        ("systemctl", "stop", "--", *blue),
        ("systemctl", "stop", "--no-block", "--", *blue),
        ("systemctl", "disable", "--", "shop-web@green.service"),
        ("systemctl", "enable", "--", *blue),
    ]


def test_a_unit_that_fails_to_start_raises_with_systemctls_words() -> None:
    conn = RecordingConnection()
    conn.answer(
        ["systemctl", "start"],
        exit_code=1,
        stdout="Job for shop-web@blue.service failed because the control process exited",
    )
    with pytest.raises(CommandFailed, match=r"Job for shop-web@blue\.service failed"):
        SystemdUnits(conn).start(["shop-web@blue.service"])


def test_install_writes_changed_units_then_reloads_systemd_once() -> None:
    conn = RecordingConnection()
    conn.answer(["systemctl", "daemon-reload"])
    manager = SystemdUnits(conn, PurePosixPath("/etc/systemd/system"))
    files = [
        UnitFile(PurePosixPath("shop-web@.service"), "[Service]\n"),
        UnitFile(PurePosixPath("shop-web@blue.service.d/release.conf"), "[Service]\nX=1\n"),
    ]
    assert manager.install(files)
    dropin = PurePosixPath("/etc/systemd/system/shop-web@blue.service.d/release.conf")
    assert conn.files[dropin] == b"[Service]\nX=1\n" and conn.modes[dropin] == 0o644
    assert PurePosixPath("/etc/systemd/system/shop-web@blue.service.d") in conn.dirs
    assert conn.commands == [("systemctl", "daemon-reload")]
    assert not manager.install(files)  # unchanged: no write, no reload
    assert conn.commands == [("systemctl", "daemon-reload")]
    manager.uninstall(["shop-web@blue.service"], "release.conf")
    assert dropin not in conn.files
    assert conn.commands[-1] == ("systemctl", "daemon-reload")


def test_logs_are_journalctl_of_the_units_as_they_printed_them() -> None:
    command = systemd.journal(["shop-web@blue.service", "shop-web@green.service"], 50, True)
    assert command.argv == (
        "journalctl",
        "--no-pager",
        "-o",
        "cat",
        "-n",
        "50",
        "-f",
        "-u",
        "shop-web@blue.service",
        "-u",
        "shop-web@green.service",
    )
    assert command.timeout is None  # following runs until interrupted
    assert systemd.journal(["u"], 5).argv[-3:] == ("5", "-u", "u")


def test_no_unexpected_command_runs() -> None:
    """The recording connection refuses a command no test foresaw (the fakes' sentinel)."""
    with pytest.raises(UnexpectedCommand):
        SystemdUnits(RecordingConnection()).stop(["shop-web@blue.service"])


def test_the_local_target_needs_root_and_systemd_as_pid_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    systemd.check_local("supervisor", "local")  # nothing asked of supervisor
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match=r"takes root; shipyard runs as an unprivileged user"):
        systemd.check_local("systemd", "local")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(systemd, "BOOTED_MARK", tmp_path / "absent")
    with pytest.raises(UsageError, match=r"systemd is not running as PID 1 on this machine"):
        systemd.check_local("systemd", "local")
    monkeypatch.setattr(systemd, "BOOTED_MARK", tmp_path)
    systemd.check_local("systemd", "local")
