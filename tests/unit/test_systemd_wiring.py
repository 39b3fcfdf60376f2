"""`process_manager = "systemd"` reaches the code that runs on the hosts: the ssh target's
hosts, their agent's command line and resident-session header, `shipyard logs`; and a host
that cannot run systemd units refuses the session with a clear error."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fakes import FakeHost
from fleetfakes import FakeSSH, example_spec, ssh_fleet
from hostkit import LISTEN, make_spec

from shipyard.errors import UsageError
from shipyard.fleet import fleet as fleets
from shipyard.fleet.remote import target_hosts
from shipyard.host import agent, lifecycle, orphans, systemd
from shipyard.host.layout import HostLayout
from shipyard.host.planning import host_plan
from shipyard.host.resident import session_header
from shipyard.spec.model import TargetSpec


def test_an_ssh_targets_hosts_carry_its_process_manager(tmp_path: Path) -> None:
    target = TargetSpec.model_validate({"hosts": ["web1", "web2"], "process_manager": "systemd"})
    hosts = target_hosts(target, tmp_path, tmp_path)
    assert [h.process_manager for h in hosts] == ["systemd", "systemd"]
    plain = TargetSpec.model_validate({"hosts": ["web1"]})
    assert target_hosts(plain, tmp_path, tmp_path)[0].process_manager == "supervisor"


def test_the_resident_agent_is_told_the_process_manager() -> None:
    header = json.loads(session_header("/srv", "0.0.0.0:80", "app", "system", "lib1", "systemd"))
    assert header["process_manager"] == "systemd"


def test_logs_of_a_systemd_host_are_read_from_journald(tmp_path: Path) -> None:
    conns = {"web1": FakeSSH("web1", tmp_path)}
    conns["web1"].local = ["printf", "up\\n"]
    fleet = ssh_fleet(tmp_path, conns)
    fleet.hosts[0].process_manager = "systemd"
    fleets.follow_logs(example_spec(), fleet, None, 20, False, lambda line: None)
    (command,) = conns["web1"].popened
    at = command.argv.index("--process-manager")
    assert command.argv[at : at + 2] == ("--process-manager", "systemd")


def test_a_host_without_systemd_as_pid_1_refuses_a_systemd_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(systemd, "BOOTED_MARK", tmp_path / "absent")
    with (
        pytest.raises(UsageError, match=r"systemd is not running as PID 1") as refused,
        io.BytesIO() as stream,
    ):
        agent.Session(tmp_path, "127.0.0.1:8080", stream, process_manager="systemd")
    assert "process_manager = 'supervisor'" in (refused.value.hint or "")


CGROUP_V2 = "0::/system.slice/shop-web@blue.service\n"
CGROUP_V1 = (
    "12:pids:/system.slice/shop-web@blue.service\n"
    "1:name=systemd:/system.slice/shop-web@blue.service\n"
    "0::/\n"
)


def test_the_service_a_process_runs_in_is_read_from_its_cgroup() -> None:
    assert orphans.cgroup_unit(CGROUP_V2) == "shop-web@blue.service"
    assert orphans.cgroup_unit(CGROUP_V1) == "shop-web@blue.service"
    assert orphans.cgroup_unit("0::/user.slice/user-0.slice/session-3.scope\n") is None
    assert orphans.cgroup_unit("0::/\n") is None


def test_an_app_server_systemd_runs_is_no_orphan_of_supervisord() -> None:
    """Recovery stops what a dead supervisord left holding an app's socket; a server in
    the slot's own unit is systemd's, and is left alone."""
    base = Path("/srv/sy")
    socket = orphans.Listener("/srv/sy/shop/shared/run/blue.sock", 7, ((41, 5), (42, 5)))
    units = {41: "shop-web@blue.service", 42: "shop-web@blue.service"}
    assert orphans.run_by_systemd(base, socket, units)
    assert not orphans.run_by_systemd(base, socket, {**units, 42: None})  # one is not
    assert not orphans.run_by_systemd(base, socket, {41: "shop-web@green.service"})
    assert not orphans.run_by_systemd(base, socket, {41: "shipyard-srv.service", 42: None})
    other = orphans.Listener("/srv/sy/.shipyard/supervisor.sock", 8, ((41, 3),))
    assert not orphans.run_by_systemd(base, other, units)


def test_a_dry_run_on_a_systemd_host_shows_the_units_it_would_write(tmp_path: Path) -> None:
    host = FakeHost(HostLayout(tmp_path))
    machine = lifecycle.Machine(
        host.conn,
        host.layout,
        host.layout.wheels,
        LISTEN,
        servers=host.servers,
        process_manager="systemd",
    )
    spec = make_spec(processes={"worker": "python worker.py"})
    plan = host_plan(machine, spec, "r1", None)
    files = [c.path for s in plan.stages if s.name == "configure" for c in s.files]
    app = host.layout.app(spec.name)
    assert str(app.program_file("blue")) not in files
    assert {
        "/etc/systemd/system/flaskr-web@.service",
        "/etc/systemd/system/flaskr-web@blue.service.d/release.conf",
        "/etc/systemd/system/flaskr-worker@blue.service.d/release.conf",
    } <= set(files)
    switch = next(s for s in plan.stages if s.name == "switch")
    assert f"start flaskr-web@blue.service on {app.socket('blue')}" in switch.notes
