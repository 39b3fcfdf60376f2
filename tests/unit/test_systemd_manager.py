"""The systemd process manager: the systemctl and journalctl commands it runs (exact argv,
over a recording connection: no systemd runs as PID 1 here) and its parser of
`systemctl show`."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path, PurePosixPath

import pytest
from fakes import RecordingConnection, Removed, UnexpectedCommand

from shipyard.errors import CommandFailed, UsageError
from shipyard.host import systemd
from shipyard.host.layout import HostLayout
from shipyard.host.procman import SlotRun, SystemdPrograms
from shipyard.host.render.units import DROPIN, UnitFile
from shipyard.host.systemd import SystemdUnits, UnitState, parse_show
from shipyard.spec.model import Spec

PROPS = (
    "--property=Id,LoadState,ActiveState,SubState,MainPID,NRestarts,Result,"
    "ActiveEnterTimestampMonotonic"
)

# `systemctl show` of three units in systemd 252's layout (Debian 12): a block per unit in
# the order asked, each property on its own line in systemd's order, blocks apart by a blank
# line; an instance systemd has no file for is "not-found".
SHOW = """\
MainPID=4121
Result=success
NRestarts=0
ActiveEnterTimestampMonotonic=81234567890
Id=shop-web@blue.service
LoadState=loaded
ActiveState=active
SubState=running

MainPID=0
Result=exit-code
NRestarts=3
ActiveEnterTimestampMonotonic=81230000000
Id=shop-worker@blue.service
LoadState=loaded
ActiveState=activating
SubState=auto-restart

MainPID=0
Result=success
NRestarts=[not set]
ActiveEnterTimestampMonotonic=0
Id=shop-web@green.service
LoadState=not-found
ActiveState=inactive
SubState=dead
"""


def test_show_output_is_read_by_name_whatever_the_order() -> None:
    states = parse_show(SHOW)
    assert states["shop-web@blue.service"] == UnitState(
        "shop-web@blue.service", "loaded", "active", "running", 4121, 0, "success", 81234.56789
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


def _dropins(unit_dir: Path, *names: str) -> None:
    """Release drop-ins left on disk by earlier deploys."""
    for name in names:
        (unit_dir / f"{name}.d").mkdir(parents=True)
        (unit_dir / f"{name}.d" / DROPIN).write_text("[Service]\n")


def test_a_scaled_down_instance_stops_and_loses_its_release(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    _dropins(
        unit_dir,
        "shop-worker@blue-1.service",
        "shop-worker@blue-2.service",  # scaled from 3 to 2
        "shop-worker@green-2.service",  # the other slot's: left alone
        "shop-x-worker@blue-2.service",  # another app's, named like it
    )
    conn = RecordingConnection()
    conn.answer(["systemctl"])
    app = HostLayout(tmp_path / "base").app("shop")
    procs = SystemdPrograms(conn, app, pwd.getpwuid(os.geteuid()).pw_name, PurePosixPath(unit_dir))
    spec = Spec.model_validate(
        {"name": "shop", "entry": "shop:app", "processes": {"worker": {"command": "w", "count": 2}}}
    )
    procs.define(SlotRun(spec, "r1", "blue"))
    stale = "shop-worker@blue-2.service"
    assert conn.commands[:2] == [
        ("systemctl", "stop", "--", stale),
        ("systemctl", "daemon-reload"),
    ]
    assert Removed(PurePosixPath(unit_dir / f"{stale}.d" / DROPIN)) in conn.recorded
    removed = [r.path for r in conn.recorded if isinstance(r, Removed)]
    assert len(removed) == 1
    written = {u.dest.relative_to(unit_dir).as_posix() for u in conn.uploads}
    assert written == {
        "shop-web@.service",
        "shop-worker@.service",
        f"shop-web@blue.service.d/{DROPIN}",
        f"shop-worker@blue.service.d/{DROPIN}",
        f"shop-worker@blue-1.service.d/{DROPIN}",
    }
    assert conn.commands[-1] == ("systemctl", "daemon-reload")


def test_destroy_stops_and_forgets_every_unit_of_the_app_only(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    _dropins(unit_dir, "shop-web@blue.service", "shop-web@green.service", "shop-x-web@blue.service")
    for template in ("shop-web@.service", "shop-x-web@.service"):
        (unit_dir / template).write_text("[Service]\n")
    conn = RecordingConnection()
    conn.answer(["systemctl"])
    app = HostLayout(tmp_path / "base").app("shop")
    procs = SystemdPrograms(conn, app, "shop", PurePosixPath(unit_dir))
    mine = ["shop-web@blue.service", "shop-web@green.service"]
    assert procs.remove_all() == mine
    assert conn.commands == [
        ("systemctl", "stop", "--", *mine),
        ("systemctl", "disable", "--", *mine),
        ("systemctl", "daemon-reload"),
    ]
    removed = {
        r.path.relative_to(unit_dir).as_posix() for r in conn.recorded if isinstance(r, Removed)
    }
    assert removed == {
        f"shop-web@blue.service.d/{DROPIN}",
        f"shop-web@green.service.d/{DROPIN}",
        "shop-web@.service",
    }


def _show_one(unit: str, active: str, sub: str, since: float) -> str:
    return (
        f"MainPID=7\nResult=success\nNRestarts=0\n"
        f"ActiveEnterTimestampMonotonic={int(since * 1e6)}\nId={unit}\nLoadState=loaded\n"
        f"ActiveState={active}\nSubState={sub}\n"
    )


def test_a_unit_is_running_once_up_for_its_startsecs_as_under_supervisor(
    tmp_path: Path,
) -> None:
    """A crash-looping worker is active for a moment between its restarts: it must not
    pass the deploy's check in that moment."""
    unit_dir = tmp_path / "units"
    conn = RecordingConnection()
    conn.answer(["systemctl", "daemon-reload"])
    app = HostLayout(tmp_path / "base").app("shop")
    procs = SystemdPrograms(conn, app, pwd.getpwuid(os.geteuid()).pw_name, PurePosixPath(unit_dir))
    spec = Spec.model_validate(
        {
            "name": "shop",
            "entry": "shop:app",
            "processes": {"worker": {"command": "w", "startsecs": 5}},
        }
    )
    procs.define(SlotRun(spec, "r1", "blue"))
    unit = "shop-worker@blue.service"
    now = time.monotonic()
    conn.answer(["systemctl", "show"], stdout=_show_one(unit, "active", "running", now - 1))
    info = procs.process(unit)
    assert info is not None and info.state == "STARTING"
    conn.answer(["systemctl", "show"], stdout=_show_one(unit, "active", "running", now - 6))
    info = procs.process(unit)
    assert info is not None and info.state == "RUNNING"
