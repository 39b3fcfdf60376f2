"""The fleet's strategies against fake agents: who gets which request, in which order, and
what a failure at each stage leaves behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from fleetfakes import FakeFleet, FakeHost, example_spec, make_artifact, make_fleet

from shipyard.errors import DeployError, UsageError
from shipyard.events import Silent
from shipyard.fleet import fleet as fleets
from shipyard.fleet import provision
from shipyard.fleet.fleet import FleetError, Sessions
from shipyard.fleet.remote import Agent, RemoteHost
from shipyard.host import protocol as p
from shipyard.host.artifact import Artifact

OLD, NEW = "old111", "new222"
SPEC = example_spec()


def _world(*names: str, **changes: FakeHost) -> FakeFleet:
    hosts = {name: FakeHost(live=OLD, slot="blue", installed=[OLD], history=[]) for name in names}
    return FakeFleet({**hosts, **changes})


def _deploy(
    tmp_path: Path, world: FakeFleet, lb: str | None = None, **target: object
) -> tuple[fleets.Fleet, Artifact, tuple[list[str], list[str]]]:
    """Connect, lock, upload and install, then roll out: a deploy after its build."""
    fleet = make_fleet(tmp_path, world, lb, **target)
    artifact = make_artifact(fleet.cache, NEW)
    agents = Sessions()
    try:
        hellos = fleets._prepare(fleet, agents, SPEC, lock_wait=5)
        fleets._distribute(fleet, fleet.web, agents, artifact, SPEC, hellos)
        done = fleets.roll_out(fleet, agents, SPEC, artifact, hellos, Silent())
    finally:
        agents.close()
    return fleet, artifact, done


def _index(world: FakeFleet, host: str, kind: type[p.Request[Any]]) -> int:
    return next(i for i, (h, r) in enumerate(world.log) if h == host and isinstance(r, kind))


# --- all at once ----------------------------------------------------------------------------


def test_all_at_once_stages_everywhere_before_any_host_switches(tmp_path: Path) -> None:
    world = _world("web1", "web2", "web3")
    _fleet, _artifact, (switched, unchanged) = _deploy(tmp_path, world)
    assert switched == ["web1", "web2", "web3"] and unchanged == []
    last_stage = max(_index(world, h, p.Stage) for h in world.hosts)
    first_commit = min(_index(world, h, p.Commit) for h in world.hosts)
    assert last_stage < first_commit
    assert all(state.live == NEW and state.history == [OLD] for state in world.hosts.values())
    # every host was locked in its hello, for a deploy, with the lock wait asked for
    hellos = world.requests(p.Hello)
    assert {h.lock for h in hellos} == {p.LockParams(action="deploy", wait=5)}
    assert all(h.app == "flaskr" for h in hellos)
    assert world.closed == ["web1", "web2", "web3"]


def test_the_release_command_runs_once_on_the_first_host_before_the_others_stage(
    tmp_path: Path,
) -> None:
    world = _world("web1", "web2", "web3")
    _deploy(tmp_path, world)
    stages = {h: world.requests(p.Stage, h)[0] for h in world.hosts}
    assert [stages[h].release_cmd for h in ("web1", "web2", "web3")] == [True, False, False]
    assert all(_index(world, "web1", p.Stage) < _index(world, h, p.Stage) for h in ("web2", "web3"))


def test_release_on_each_runs_the_release_command_on_every_host(tmp_path: Path) -> None:
    world = _world("web1", "web2")
    _deploy(tmp_path, world, release_on="each")
    assert [s.release_cmd for s in world.requests(p.Stage)] == [True, True]


def test_hosts_already_on_the_release_are_left_alone(tmp_path: Path) -> None:
    world = _world("web1", "web2", web2=FakeHost(live=NEW, slot="blue", installed=[NEW]))
    _fleet, _artifact, (switched, unchanged) = _deploy(tmp_path, world)
    assert (switched, unchanged) == (["web1"], ["web2"])
    assert world.requests(p.Stage, "web2") == [] and world.requests(p.Receive, "web2") == []


def test_a_host_failing_to_connect_stops_everything_before_any_change(tmp_path: Path) -> None:
    world = _world("web1", "web2", web2=FakeHost(fail={"connect": "HostError"}))
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world)
    assert "[connect] web2: cannot reach the host over SSH" in raised.value.message
    assert "before anything was changed" in raised.value.message
    assert world.requests(p.Receive) == [] and world.requests(p.Stage) == []


def test_a_held_lock_on_one_host_stops_the_deploy_naming_it(tmp_path: Path) -> None:
    world = _world("web1", "web2", web2=FakeHost(fail={"hello": "LockHeld"}))
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world)
    assert [f.host for f in raised.value.failures] == ["web2"]
    assert raised.value.failures[0].error.exit_code == 75
    assert world.requests(p.Stage) == []


def test_a_host_failing_to_install_switches_nothing(tmp_path: Path) -> None:
    world = _world("web1", "web2", web2=FakeHost(live=OLD, fail={"receive": "DeployError"}))
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world)
    assert "[upload + install] web2 (receive): receive failed" in raised.value.message
    assert "Nothing was switched anywhere" in str(raised.value.hint)
    assert world.requests(p.Stage) == [] and world.hosts["web1"].live == OLD


def test_a_host_failing_to_stage_aborts_every_host_and_switches_none(tmp_path: Path) -> None:
    world = _world("web1", "web2", "web3", web3=FakeHost(live=OLD, fail={"stage": "DeployError"}))
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world)
    assert "[stage] web3" in raised.value.message and "while staging" in raised.value.message
    assert {h for h, r in world.log if isinstance(r, p.Abort)} == {"web1", "web2", "web3"}
    assert world.requests(p.Commit) == []
    assert all(state.live == OLD and state.staged is None for state in world.hosts.values())


def test_the_release_command_failing_on_the_first_host_stages_no_other(tmp_path: Path) -> None:
    world = _world("web1", "web2", web1=FakeHost(live=OLD, fail={"stage": "CommandFailed"}))
    with pytest.raises(FleetError, match=r"\[release command \+ stage\] web1"):
        _deploy(tmp_path, world)
    assert world.requests(p.Stage, "web2") == []


def test_a_commit_failing_with_on_failure_keep_keeps_the_switched_hosts(tmp_path: Path) -> None:
    world = _world(
        "web1", "web2", "web3", web3=FakeHost(live=OLD, fail={"commit": "HealthCheckFailed"})
    )
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world)
    assert "[switch] web3 (commit): commit failed" in raised.value.message
    assert "already switched and kept: web1, web2" in raised.value.message
    assert world.requests(p.RollbackTarget) == []
    assert [world.hosts[h].live for h in ("web1", "web2", "web3")] == [NEW, NEW, OLD]


def test_a_commit_failing_with_on_failure_rollback_rolls_the_switched_hosts_back(
    tmp_path: Path,
) -> None:
    world = _world(
        "web1", "web2", "web3", web3=FakeHost(live=OLD, fail={"commit": "HealthCheckFailed"})
    )
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world, on_failure="rollback")
    assert "[switch] web3" in raised.value.message
    assert "(web1, web2 rolled back to their previous release)" in raised.value.message
    for host in ("web1", "web2"):
        ops = world.ops(host)
        assert ops[-4:] == ["commit", "rollback_target", "stage", "commit"], ops
        back = world.requests(p.Stage, host)[-1]
        assert (back.release, back.action, back.release_cmd) == (OLD, "rollback", False)
        assert world.hosts[host].live == OLD
    assert world.requests(p.RollbackTarget, "web3") == []


def test_a_failing_rollback_is_reported_beside_the_failure(tmp_path: Path) -> None:
    world = _world(
        "web1",
        "web2",
        web1=FakeHost(live=OLD, fail={"rollback_target": "DeployError"}),
        web2=FakeHost(live=OLD, fail={"commit": "HealthCheckFailed"}),
    )
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world, on_failure="rollback")
    assert [(f.host, f.stage) for f in raised.value.failures] == [
        ("web2", "switch"),
        ("web1", "roll back"),
    ]


# --- rolling --------------------------------------------------------------------------------


def _backends(request: p.Lb) -> list[bool]:
    return [down for _address, down in request.backends]


def test_rolling_drains_each_batch_from_the_lb_while_it_switches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RemoteHost, "backend_address", lambda self: f"{self.name}:80")
    world = _world("web1", "web2", "web3", "lb1")
    _fleet, _artifact, (switched, _) = _deploy(
        tmp_path, world, lb="lb1", strategy="rolling", batch=2
    )
    assert switched == ["web1", "web2", "web3"]
    lbs = world.requests(p.Lb, "lb1")
    assert [_backends(r) for r in lbs] == [
        [True, True, False],  # batch 1 out
        [False, False, False],
        [False, False, True],  # batch 2 out
        [False, False, False],
        [False, False, False],  # the final update, with the static files
    ]
    assert [r.update_static for r in lbs] == [False, False, False, False, True]
    assert lbs[0].backends[0] == ("web1:80", True) and lbs[-1].static == {"/static": "0-static"}
    # batch 2 is staged only once batch 1 is back in the lb
    assert _index(world, "web3", p.Stage) > world.log.index(("lb1", lbs[1]))
    # the lb was locked for the app in its own request
    assert world.requests(p.Lock, "lb1") == [p.Lock(app="flaskr", action="deploy", wait=5)]
    # the release command: on the first host of the first batch only
    assert [s.release_cmd for s in world.requests(p.Stage)] == [True, False, False]


def test_rolling_stops_at_a_failing_batch_and_puts_it_back_in_the_lb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RemoteHost, "backend_address", lambda self: f"{self.name}:80")
    world = _world(
        "web1", "web2", "web3", "lb1", web2=FakeHost(live=OLD, fail={"stage": "DeployError"})
    )
    with pytest.raises(FleetError) as raised:
        _deploy(tmp_path, world, lb="lb1", strategy="rolling", batch=1)
    assert "already switched and kept: web1" in raised.value.message
    assert world.requests(p.Abort, "web2") == [p.Abort(app="flaskr")]
    assert world.requests(p.Stage, "web3") == []  # the rollout stopped
    assert _backends(world.requests(p.Lb, "lb1")[-1]) == [False, False, False]
    assert [world.hosts[h].live for h in ("web1", "web2", "web3")] == [NEW, OLD, OLD]


def test_rolling_with_rollback_rolls_back_the_earlier_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(RemoteHost, "backend_address", lambda self: f"{self.name}:80")
    world = _world(
        "web1", "web2", "lb1", web2=FakeHost(live=OLD, fail={"commit": "HealthCheckFailed"})
    )
    with pytest.raises(FleetError, match=r"web1 rolled back"):
        _deploy(tmp_path, world, lb="lb1", strategy="rolling", on_failure="rollback")
    assert world.hosts["web1"].live == OLD and world.hosts["web1"].history == [OLD, NEW]


# --- distribute and secrets -------------------------------------------------------------------


def test_only_missing_wheels_are_sent_and_a_refused_reuse_sends_the_whole_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleets, "ensure_bundle", lambda wheel, tag: None)
    world = _world("web1", web1=FakeHost(live=OLD, installed=[OLD], reuse_fails=True))
    fleet = make_fleet(tmp_path, world)
    old = make_artifact(fleet.cache, OLD)
    new = make_artifact(fleet.cache, NEW, wheels={"a-1-py3-none-any.whl": b"a", "b-1.whl": b"b"})
    have = {"a-1-py3-none-any.whl": new.manifest.wheels[0].sha256}
    agents = Sessions()
    hellos = fleets._prepare(fleet, agents, SPEC, lock_wait=0)
    hellos["web1"] = hellos["web1"].model_copy(update={"wheels": have})
    sent = fleets._distribute(fleet, fleet.web, agents, new, SPEC, hellos)
    first, second = world.requests(p.Receive, "web1")
    assert first.reuse is not None and first.reuse.base == old.id
    assert set(first.reuse.files) == {"static/0-static/style.css"}  # the same in both
    paths, again = world.hosts["web1"].received
    assert "wheels/b-1.whl" in paths and "wheels/a-1-py3-none-any.whl" not in paths
    assert sorted(paths) == [
        "artifact/app/flaskr-1.0-py3-none-any.whl",
        "artifact/manifest.json",
        "wheels/b-1.whl",
    ]
    assert second.reuse is None and "artifact/static/0-static/style.css" in again
    assert sent > 0 and second.install == "flaskr"


def test_a_host_on_another_python_is_refused_before_any_upload(tmp_path: Path) -> None:
    world = _world("web1", web1=FakeHost(live=OLD, python="3.12.1"))
    fleet = make_fleet(tmp_path, world)
    artifact = make_artifact(fleet.cache, NEW)
    agents = Sessions()
    hellos = fleets._prepare(fleet, agents, SPEC, lock_wait=0)
    with pytest.raises(FleetError, match=r"web1: runs Python 3.12; release new222 is built for"):
        fleets._distribute(fleet, fleet.web, agents, artifact, SPEC, hellos)
    assert world.requests(p.Receive) == []


def test_generated_secrets_are_copied_to_the_hosts_that_lack_them(tmp_path: Path) -> None:
    spec = example_spec(secrets={"SECRET_KEY": "generate"})
    world = _world("web1", "web2", web1=FakeHost(live=OLD, config={"SECRET_KEY": "s3"}))
    fleet = make_fleet(tmp_path, world)
    agents = Sessions()
    hellos = fleets._prepare(fleet, agents, spec, lock_wait=0)
    states = {name: fleets.app_state(h) for name, h in hellos.items()}
    fleets._sync_secrets(fleet, fleet.web, agents, spec, Silent(), states)
    assert world.hosts["web2"].config == {"SECRET_KEY": "s3"}
    assert world.requests(p.ConfigPut, "web1") == []


def test_a_required_secret_missing_anywhere_stops_the_deploy(tmp_path: Path) -> None:
    spec = example_spec(secrets={"API_TOKEN": "required"})
    world = _world("web1", "web2", web1=FakeHost(live=OLD, config={"API_TOKEN": "t"}))
    fleet = make_fleet(tmp_path, world)
    agents = Sessions()
    hellos = fleets._prepare(fleet, agents, spec, lock_wait=0)
    states = {name: fleets.app_state(h) for name, h in hellos.items()}
    with pytest.raises(DeployError, match=r"needs secrets that are not set \(web2: API_TOKEN\)"):
        fleets._sync_secrets(fleet, fleet.web, agents, spec, Silent(), states)


# --- rollback and the other fleet-wide commands ------------------------------------------------


def test_fleet_rollback_stages_each_hosts_target_then_switches(tmp_path: Path) -> None:
    world = FakeFleet(
        {
            "web1": FakeHost(live=NEW, slot="green", installed=[OLD, NEW], history=[OLD]),
            "web2": FakeHost(live=NEW, slot="green", installed=[OLD, NEW], history=[OLD]),
        }
    )
    fleet = make_fleet(tmp_path, world)
    back = fleets.rollback(SPEC, fleet, Silent(), None, lock_wait=3)
    assert back == [OLD]
    assert fleet.reach.readied == ["web1", "web2"]  # type: ignore[attr-defined]
    for host in ("web1", "web2"):
        assert world.ops(host) == ["hello", "lock", "rollback_target", "stage", "commit"]
        assert world.requests(p.Lock, host) == [p.Lock(app="flaskr", action="rollback", wait=3)]
        assert world.hosts[host].live == OLD


def test_fleet_rollback_reports_a_held_lock_per_host_and_stages_nothing(tmp_path: Path) -> None:
    world = FakeFleet(
        {
            "web1": FakeHost(live=NEW, history=[OLD]),
            "web2": FakeHost(live=NEW, history=[OLD], fail={"lock": "LockHeld"}),
        }
    )
    with pytest.raises(FleetError) as raised:
        fleets.rollback(SPEC, make_fleet(tmp_path, world), Silent(), None, lock_wait=0)
    assert [(f.host, f.stage) for f in raised.value.failures] == [("web2", "lock")]
    assert "to take the app's lock" in raised.value.message
    assert raised.value.failures[0].error.exit_code == 75
    assert world.requests(p.Stage) == [] and world.requests(p.RollbackTarget) == []


def test_fleet_rollback_failing_to_stage_aborts_and_to_switch_says_where(tmp_path: Path) -> None:
    world = FakeFleet({"web1": FakeHost(live=NEW, history=[OLD], fail={"stage": "DeployError"})})
    with pytest.raises(FleetError, match="while staging the rollback"):
        fleets.rollback(SPEC, make_fleet(tmp_path, world), Silent(), None, lock_wait=0)
    assert world.requests(p.Abort) == [p.Abort(app="flaskr")]
    world = FakeFleet({"web1": FakeHost(live=NEW, history=[OLD], fail={"commit": "DeployError"})})
    with pytest.raises(FleetError, match="while switching back") as raised:
        fleets.rollback(SPEC, make_fleet(tmp_path, world), Silent(), OLD, lock_wait=0)
    assert "Rolled back: none" in str(raised.value.hint)
    world = FakeFleet({"web1": FakeHost(live=NEW, fail={"rollback_target": "DeployError"})})
    with pytest.raises(FleetError, match="to find a release to roll back to"):
        fleets.rollback(SPEC, make_fleet(tmp_path, world), Silent(), None, lock_wait=0)


def test_a_host_that_cannot_be_reached_stops_a_rollback_before_any_session(tmp_path: Path) -> None:
    world = FakeFleet({"web1": FakeHost(fail={"connect": "HostError"})})
    with pytest.raises(FleetError, match="before anything was changed"):
        fleets.rollback(SPEC, make_fleet(tmp_path, world), Silent(), None, lock_wait=0)
    assert world.log == []


def test_status_asks_web_hosts_for_their_status_and_the_lb_for_its_hello(tmp_path: Path) -> None:
    world = _world("web1", "web2", "lb1", web2=FakeHost(fail={"connect": "HostError"}))
    rows = fleets.status(SPEC, make_fleet(tmp_path, world, lb="lb1"))
    assert [(r.host, r.role) for r in rows] == [("web1", "web"), ("web2", "web"), ("lb1", "lb")]
    assert rows[0].web is not None and rows[0].web.release == OLD and rows[0].web.healthy
    assert rows[1].error is not None and "[connect] web2: cannot reach" in rows[1].error
    assert rows[2].lb is not None and rows[2].lb.version == "test"
    assert world.requests(p.Hello, "lb1") == [p.Hello(), p.Hello()]  # the session's, the row's


def test_each_web_sends_one_request_to_every_web_host_and_names_failures(tmp_path: Path) -> None:
    world = _world("web1", "web2", web2=FakeHost(fail={"stop": "CommandFailed"}))
    fleet = make_fleet(tmp_path, world)
    with pytest.raises(FleetError, match=r"\[stop\] web2") as raised:
        fleets.each_web(fleet, p.Stop(spec=SPEC))
    assert "Done on: web1." in str(raised.value.hint)
    done = fleets.each_web(make_fleet(tmp_path, _world("web1")), p.Start(spec=SPEC))
    assert done == {"web1": p.ProcessesReply(processes=["flaskr-web-blue"])}


def test_config_changes_reach_every_host_through_a_restart(tmp_path: Path) -> None:
    world = _world("web1", "web2", web1=FakeHost(live=OLD, config={"A": "1"}))
    fleet = make_fleet(tmp_path, world)
    changed = fleets.config_update(SPEC, fleet, lambda current: {**current, "B": "2"})
    assert changed == ["web1", "web2"]
    restarts = world.requests(p.Restart, "web1")
    assert restarts == [p.Restart(spec=SPEC, config={"A": "1", "B": "2"}, action="config set")]
    assert world.hosts["web2"].config == {"B": "2"}
    assert fleets.config_get(SPEC, fleet) == {"A": "1", "B": "2"}
    broken = _world("web1", web1=FakeHost(fail={"restart": "HealthCheckFailed"}))
    with pytest.raises(FleetError, match="to change the config"):
        fleets.config_update(SPEC, make_fleet(tmp_path, broken), dict)


def test_releases_plans_and_the_lb_removal_go_through_the_agents(tmp_path: Path) -> None:
    world = _world("web1", "lb1", web1=FakeHost(live=NEW, installed=[OLD, NEW]))
    fleet = make_fleet(tmp_path, world, lb="lb1")
    listed = fleets.releases(SPEC, fleet)
    assert [(r.id, r.live) for r in listed["web1"]] == [(NEW, True), (OLD, False)]
    plans = fleets.plans(SPEC, fleet, NEW)
    assert plans["web1"].host == "web1" and plans["web1"].release == NEW
    assert fleets.remove_from_lb(SPEC, fleet) is True
    assert world.requests(p.LbRemove, "lb1") == [p.LbRemove(app="flaskr")]
    assert fleets.remove_from_lb(SPEC, make_fleet(tmp_path, _world("web1"))) is False
    broken = _world("web1", web1=FakeHost(fail={"releases": "DeployError", "plan": "DeployError"}))
    with pytest.raises(FleetError, match="to list releases"):
        fleets.releases(SPEC, make_fleet(tmp_path, broken))
    with pytest.raises(FleetError, match="to plan the deploy"):
        fleets.plans(SPEC, make_fleet(tmp_path, broken), NEW)


def test_run_argv_runs_in_the_live_release_on_the_chosen_host(tmp_path: Path) -> None:
    world = _world("web1", "web2")
    fleet = make_fleet(tmp_path, world)
    argv = fleets.run_argv(SPEC, fleet, ["flask", "shell"], "web2")
    assert argv[-1].endswith("flask shell") or "flask" in " ".join(argv)
    assert f"/srv/shipyard/flaskr/releases/{OLD}" in " ".join(argv)
    assert world.requests(p.State, "web2") == [p.State(app="flaskr")]
    with pytest.raises(UsageError, match="--host 'web9' is not a web host"):
        fleets.run_argv(SPEC, fleet, ["true"], "web9")
    idle = _world("web1", web1=FakeHost())
    with pytest.raises(UsageError, match="not deployed on web1"):
        fleets.run_argv(SPEC, make_fleet(tmp_path, idle), ["true"], None)


def test_run_argv_runs_in_a_source_tree_where_the_host_says(tmp_path: Path) -> None:
    tree = f"/srv/shipyard/flaskr/releases/{OLD}/src"
    world = _world("web1", web1=FakeHost(live=OLD, slot="blue", installed=[OLD], workdir=tree))
    argv = fleets.run_argv(SPEC, make_fleet(tmp_path, world), ["python", "manage.py"], None)
    assert f" {tree} python manage.py" in " ".join(argv)


# --- open_current: an agent of another protocol is synced like an out-of-date one ----------------


class _Opened:
    """A session whose hello raises `error` (or answers), as Agent.open would give."""

    def __init__(self, error: Exception | None, reply: p.HelloReply) -> None:
        self.error, self.reply, self.closed = error, reply, False
        self.proc = type("Proc", (), {"returncode": None})()

    def call(self, request: p.Request[Any], files: object = ()) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply

    def close(self) -> None:
        self.closed = True


def test_open_current_syncs_the_agent_after_a_protocol_mismatch_and_opens_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetfakes import hello_reply

    from shipyard.fleet.remote import ProtocolMismatch, lib_id

    mismatch = ProtocolMismatch("web1", "hello", 2, "its hello")
    reply = hello_reply(FakeHost(), None)
    sessions = [_Opened(mismatch, reply), _Opened(None, reply)]
    monkeypatch.setattr(Agent, "open", classmethod(lambda cls, host: sessions.pop(0)))
    synced: list[list[str]] = []
    monkeypatch.setattr(
        provision, "execute", lambda host, actions: synced.append([a.what for a in actions])
    )
    monkeypatch.setattr(fleets, "require_runtime", lambda host: None)
    fleet = make_fleet(tmp_path, _world("web1"))
    host = fleet.web[0]
    facts = type("Facts", (), {"lib": lib_id()})()  # its lib mark says current: synced anyway
    monkeypatch.setattr(host, "read_facts", lambda user: facts)
    first, second = sessions
    agent, said = fleets.open_current(fleet, host, p.Hello())
    assert said == reply and agent is cast(Any, second)
    assert first.closed and not sessions
    assert len(synced) == 1 and synced[0][0].startswith("sync shipyard")
