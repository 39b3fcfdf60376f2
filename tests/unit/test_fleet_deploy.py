"""A whole fleet deploy, its build faked (fleetfakes.FakeBuild): what runs around the build,
what a failure at each stage leaves on the hosts, and how the fleet reports and closes."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleetfakes import FakeBuild, FakeFleet, FakeHost, FakeSSH, example_spec, make_fleet

from shipyard.build.platforms import Platform
from shipyard.errors import BuildError, DeployError, TestsFailed, UsageError
from shipyard.events import Silent
from shipyard.fleet import fleet as fleets
from shipyard.fleet.fleet import Failure, Fleet, FleetError, FleetOutcome
from shipyard.fleet.ssh import ControlDir
from shipyard.host import protocol as p
from shipyard.spec.model import Spec

OLD, NEW = "old111", "new222"
SPEC = example_spec()


def _world(*names: str, **changes: FakeHost) -> FakeFleet:
    hosts = {name: FakeHost(live=OLD, slot="blue", installed=[OLD], history=[]) for name in names}
    return FakeFleet({**hosts, **changes})


def _deploy(
    tmp_path: Path,
    fleet: Fleet,
    build: FakeBuild,
    reporter: Silent | None = None,
    *,
    spec: Spec = SPEC,
    skip_tests: bool = False,
) -> FleetOutcome:
    return fleets.deploy(
        tmp_path / "project",
        spec,
        fleet,
        reporter or Silent(),
        skip_tests=skip_tests,
        lock_wait=7,
        builder=build.builder(),
    )


def test_a_deploy_builds_tests_installs_and_switches_every_host(tmp_path: Path) -> None:
    world = _world("web1", "web2")
    fleet = make_fleet(tmp_path, world)
    build = FakeBuild(fleet.cache, NEW)
    reporter = Silent()
    outcome = _deploy(tmp_path, fleet, build, reporter)
    assert (outcome.release, outcome.switched, outcome.unchanged) == (NEW, ["web1", "web2"], [])
    assert outcome.url == "http://web1:80/" and outcome.sent_bytes > 0
    assert all(state.live == NEW for state in world.hosts.values())
    # built once, for this machine; the tests ran, and said so
    assert build.platforms == [None] and build.calls.count("build") == 1
    assert "tests" in build.calls and "12 passed" in reporter.notes
    assert f"artifact {NEW}: the wheel flaskr-1.0-py3-none-any.whl" in reporter.notes
    assert f"sent {outcome.sent_bytes} bytes in all" in reporter.notes
    assert {h.lock for h in world.requests(p.Hello)} == {p.LockParams(action="deploy", wait=7)}
    assert "connect + lock 2 host(s)" in reporter.timings and reporter.warnings == []
    assert sorted(world.closed) == ["web1", "web2"]


@pytest.mark.parametrize(
    ("skip_tests", "enabled", "warning"),
    [
        (True, True, "tests skipped (--skip-tests)"),
        (False, False, "tests skipped (tests.enabled = false)"),
    ],
)
def test_skipped_tests_are_not_run_and_the_deploy_warns_why(
    tmp_path: Path, skip_tests: bool, enabled: bool, warning: str
) -> None:
    fleet = make_fleet(tmp_path, _world("web1"))
    build = FakeBuild(fleet.cache, NEW)
    reporter = Silent()
    spec = example_spec(tests={"enabled": enabled})
    _deploy(tmp_path, fleet, build, reporter, spec=spec, skip_tests=skip_tests)
    assert "tests" not in build.calls and reporter.warnings == [warning]
    assert "test" not in reporter.timings


def test_failing_tests_stop_the_deploy_after_the_install_and_before_any_switch(
    tmp_path: Path,
) -> None:
    world = _world("web1", "web2")
    fleet = make_fleet(tmp_path, world)
    with pytest.raises(TestsFailed, match="1 failed"):
        _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW, fail="tests"))
    # the install overlapped the tests; the switch waits for them
    assert {h for h, r in world.log if isinstance(r, p.Receive)} == {"web1", "web2"}
    assert world.requests(p.Stage) == [] and world.requests(p.Commit) == []
    assert all(state.live == OLD for state in world.hosts.values())
    assert sorted(world.closed) == ["web1", "web2"]


def test_a_failed_build_sends_nothing_and_closes_the_sessions_it_opened(tmp_path: Path) -> None:
    world = _world("web1", "web2")
    fleet = make_fleet(tmp_path, world)
    with pytest.raises(BuildError, match="did not build"):
        _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW, fail="build"))
    assert world.requests(p.Receive) == [] and world.requests(p.Stage) == []
    assert sorted(world.opened) == sorted(world.closed) == ["web1", "web2"]


def test_a_held_lock_on_a_host_stops_the_deploy_before_any_upload_naming_that_host(
    tmp_path: Path,
) -> None:
    world = _world("web1", "web2", "web3", web2=FakeHost(fail={"hello": "LockHeld"}))
    fleet = make_fleet(tmp_path, world)
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW))
    assert [(f.host, f.stage, f.error.exit_code) for f in raised.value.failures] == [
        ("web2", "connect", 75)
    ]
    assert "before anything was changed" in raised.value.message
    assert raised.value.hint == "Nothing was deployed."
    assert world.requests(p.Receive) == []
    assert sorted(world.closed) == ["web1", "web3"]  # web2's session never opened


def test_the_lb_is_locked_on_its_own_and_gets_the_static_files_last(tmp_path: Path) -> None:
    world = _world("web1", "web2", lb1=FakeHost())
    fleet = make_fleet(tmp_path, world, lb="lb1")
    outcome = _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW))
    assert outcome.url == "http://lb1:80/" and outcome.switched == ["web1", "web2"]
    assert world.requests(p.Lock, "lb1") == [p.Lock(app="flaskr", action="deploy", wait=7)]
    assert world.requests(p.Hello, "lb1")[0].lock is None  # a web host's lock is in its hello
    assert world.requests(p.Receive, "lb1") == []
    assert world.ops("lb1")[-1] == "lb" and world.requests(p.Lb, "lb1")[-1].update_static


def test_hosts_of_another_platform_get_an_artifact_built_for_it(tmp_path: Path) -> None:
    arm = {name: FakeHost(live=OLD, slot="blue", platform="linux-aarch64") for name in ("a1", "a2")}
    world = FakeFleet(arm)
    fleet = make_fleet(tmp_path, world)
    build = FakeBuild(fleet.cache, NEW, foreign_release="arm333")
    reporter = Silent()
    outcome = _deploy(tmp_path, fleet, build, reporter)
    assert build.platforms == [None, Platform("linux-aarch64", "glibc 2.36")]
    assert outcome.release == "arm333" and world.hosts["a1"].live == "arm333"
    assert {r.release for r in world.requests(p.Receive)} == {"arm333"}
    assert "build for linux-aarch64 (glibc 2.36)" in reporter.timings


def test_web_hosts_of_mixed_platforms_are_refused_before_any_upload(tmp_path: Path) -> None:
    world = _world("web1", web2=FakeHost(live=OLD, slot="blue", platform="linux-aarch64"))
    fleet = make_fleet(tmp_path, world)
    with pytest.raises(
        DeployError, match=r"different platforms .*linux-aarch64 \(glibc 2.36\): web2"
    ):
        _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW))
    assert world.requests(p.Receive) == []
    assert sorted(world.closed) == ["web1", "web2"]


def test_a_fleet_already_on_the_release_switches_nothing(tmp_path: Path) -> None:
    world = FakeFleet({n: FakeHost(live=NEW, slot="blue", installed=[NEW]) for n in ("w1", "w2")})
    fleet = make_fleet(tmp_path, world)
    outcome = _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW))
    assert (outcome.switched, outcome.unchanged, outcome.sent_bytes) == ([], ["w1", "w2"], 0)
    assert world.requests(p.Stage) == [] and world.requests(p.Receive) == []


def test_a_generated_secret_no_host_has_is_made_once_and_set_everywhere(tmp_path: Path) -> None:
    world = _world("web1", "web2")
    spec = example_spec(secrets={"SECRET_KEY": "generate"})
    fleet = make_fleet(tmp_path, world)
    _deploy(tmp_path, fleet, FakeBuild(fleet.cache, NEW), spec=spec)
    keys = {name: state.config["SECRET_KEY"] for name, state in world.hosts.items()}
    assert keys["web1"] == keys["web2"] and len(keys["web1"]) >= 32


# --- how failures read, and the fleet itself ----------------------------------------------


def test_a_fleet_error_names_each_host_once_with_its_stage_and_hint() -> None:
    failures = [
        Failure("web1", "stage", DeployError("disk full", hint="Free some space.")),
        Failure("web2", "switch", DeployError("web2: health check failed")),
    ]
    error = FleetError(failures, "while staging", "Nothing was switched.")
    assert error.message.splitlines() == [
        "2 host(s) failed while staging:",
        "- [stage] web1: disk full",
        "  Free some space.",
        "- [switch] web2: health check failed",
    ]
    assert error.hint == "Nothing was switched." and error.failures == failures


def test_closing_a_fleet_with_a_private_control_dir_closes_every_connection(
    tmp_path: Path,
) -> None:
    control = ControlDir()
    control.path, control.private = tmp_path / "sockets", True
    control.path.mkdir()
    conns = [FakeSSH(name, control.path) for name in ("web1", "web2")]
    fleet = make_fleet(tmp_path, _world("web1", "web2"))
    for host, conn in zip(fleet.hosts, conns, strict=True):
        host.conn = conn
    fleet.control = control
    fleet.close()
    assert [conn.closed for conn in conns] == [1, 1] and not control.path.exists()


def test_closing_a_fleet_on_the_shared_control_dir_leaves_the_masters_up(tmp_path: Path) -> None:
    fleet = make_fleet(tmp_path, _world("web1"))
    conn = FakeSSH("web1", tmp_path)
    fleet.hosts[0].conn = conn
    assert not fleet.control.private
    fleet.close()
    assert conn.closed == 0 and fleet.control.path.is_dir()


def test_open_fleet_makes_the_targets_hosts_and_refuses_a_local_target(tmp_path: Path) -> None:
    spec = example_spec(
        targets={"prod": {"type": "ssh", "hosts": ["deploy@web1", "web2:2222"], "lb": "lb1"}}
    )
    with fleets.open_fleet(tmp_path, spec, "prod", tmp_path / "cache") as fleet:
        assert [(h.name, h.role) for h in fleet.hosts] == [
            ("deploy@web1", "web"),
            ("web2:2222", "web"),
            ("lb1", "lb"),
        ]
        assert fleet.lb is not None and fleet.lb.name == "lb1"
        assert isinstance(fleet.reach, fleets.SSHReach)
    refused = fleets.open_fleet(tmp_path, spec, "local", tmp_path / "cache")
    with pytest.raises(UsageError, match="target 'local' is not an ssh target"):
        refused.__enter__()
