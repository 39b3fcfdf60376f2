"""The one-time setup command on a fleet, against fake agents that decide about it as hosts do:
once per target, where the release command runs (`release_on`), never again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fleetfakes import FakeFleet, FakeHost, example_spec, make_artifact, make_fleet

from shipyard.events import Silent
from shipyard.fleet import fleet as fleets
from shipyard.fleet.fleet import FleetError, Sessions
from shipyard.host import protocol as p
from shipyard.host.setup_command import SetupRecord
from shipyard.spec.model import Spec

INIT_DB = "flask --app flaskr init-db"
SPEC = example_spec(setup=INIT_DB)  # and its release command
SETUP_ONLY = example_spec(setup=INIT_DB, release="")


def _fresh(*names: str, **changes: FakeHost) -> FakeFleet:
    """Hosts the app was never deployed to."""
    return FakeFleet({**{name: FakeHost() for name in names}, **changes}, setup=INIT_DB)


def _deploy(
    tmp_path: Path, world: FakeFleet, release: str, spec: Spec = SPEC, **target: Any
) -> Silent:
    fleet = make_fleet(tmp_path / release, world, **target)
    artifact = make_artifact(fleet.cache, release)
    agents = Sessions()
    told = Silent()
    try:
        hellos = fleets._prepare(fleet, agents, spec, lock_wait=5)
        fleets._distribute(fleet, fleet.web, agents, artifact, spec, hellos)
        fleets.roll_out(fleet, agents, spec, artifact, hellos, told)
    finally:
        agents.close()
    return told


def _runs(world: FakeFleet) -> dict[str, int]:
    return {name: host.setup_runs for name, host in world.hosts.items()}


def _how(world: FakeFleet) -> dict[str, str | None]:
    return {name: h.setup.how if h.setup else None for name, h in world.hosts.items()}


def _stages(world: FakeFleet) -> list[tuple[str, bool, str | None]]:
    return [(h, r.release_cmd, r.setup_done_on) for h, r in world.log if isinstance(r, p.Stage)]


def test_release_on_first_sets_up_once_on_the_release_host_and_never_again(
    tmp_path: Path,
) -> None:
    world = _fresh("web1", "web2", "web3")
    told = _deploy(tmp_path, world, "r1")
    assert _runs(world) == {"web1": 1, "web2": 0, "web3": 0}
    assert _how(world) == {"web1": "ran", "web2": "on web1", "web3": "on web1"}
    # web1 alone first, running the commands; the others once it has, recording it
    assert _stages(world) == [
        ("web1", True, None),
        ("web2", False, "web1"),
        ("web3", False, "web1"),
    ]
    assert "web2: setup is done for this target on web1: not run here" in told.notes
    world.log.clear()
    for release in ("r2", "r3"):
        _deploy(tmp_path, world, release)
    assert _runs(world) == {"web1": 1, "web2": 0, "web3": 0}
    assert _stages(world)[:3] == [
        ("web1", True, "web1"),
        ("web2", False, "web1"),
        ("web3", False, "web1"),
    ]


def test_a_new_first_host_does_not_set_up_a_target_that_is(tmp_path: Path) -> None:
    done = SetupRecord("t", "r1", INIT_DB)
    world = _fresh("web0", "web1", web1=FakeHost(live="r1", slot="blue", setup=done))
    _deploy(tmp_path, world, "r2")
    assert _runs(world) == {"web0": 0, "web1": 0}
    assert _how(world) == {"web0": "on web1", "web1": "ran"}


def test_without_a_release_command_the_first_host_still_sets_up_before_the_others_stage(
    tmp_path: Path,
) -> None:
    world = _fresh("web1", "web2")
    _deploy(tmp_path, world, "r1", SETUP_ONLY)
    assert _stages(world) == [("web1", True, None), ("web2", False, "web1")]
    world.log.clear()
    _deploy(tmp_path, world, "r2", SETUP_ONLY)  # done: every host at once, none runs it
    assert _stages(world) == [("web1", False, "web1"), ("web2", False, "web1")]
    assert _runs(world) == {"web1": 1, "web2": 0}


def test_a_failing_setup_stages_no_other_host_and_runs_again_next_time(tmp_path: Path) -> None:
    world = _fresh("web1", "web2", web1=FakeHost(setup_fails=True))
    with pytest.raises(FleetError, match=r"\[release command \+ stage\] web1"):
        _deploy(tmp_path, world, "r1")
    assert world.requests(p.Stage, "web2") == []
    assert _how(world) == {"web1": None, "web2": None}
    world.hosts["web1"].setup_fails = False
    _deploy(tmp_path, world, "r2")
    assert _runs(world) == {"web1": 2, "web2": 0}
    assert _how(world) == {"web1": "ran", "web2": "on web1"}


def test_a_target_live_before_it_had_a_setup_counts_as_set_up(tmp_path: Path) -> None:
    world = FakeFleet(
        {name: FakeHost(live="r0", slot="blue", installed=["r0"]) for name in ("web1", "web2")},
        setup=INIT_DB,
    )
    told = _deploy(tmp_path, world, "r1")
    assert _runs(world) == {"web1": 0, "web2": 0}
    assert _how(world) == {"web1": "assumed", "web2": "assumed"}
    assert any(note.startswith("web1: setup treated as done, not run") for note in told.notes)


def test_release_on_each_sets_up_each_host_once(tmp_path: Path) -> None:
    done = SetupRecord("t", "r0", INIT_DB)
    world = _fresh("web1", "web2", web3=FakeHost(live="r0", slot="blue", setup=done))
    _deploy(tmp_path, world, "r1", release_on="each")
    assert _runs(world) == {"web1": 1, "web2": 1, "web3": 0}
    assert {(h, cmd, on) for h, cmd, on in _stages(world)} == {
        ("web1", True, None),
        ("web2", True, None),
        ("web3", True, None),
    }
    _deploy(tmp_path, world, "r2", release_on="each")
    assert _runs(world) == {"web1": 1, "web2": 1, "web3": 0}


def test_a_rolling_deploy_sets_up_in_its_first_batch_only(tmp_path: Path) -> None:
    world = _fresh("web1", "web2", "web3")
    _deploy(tmp_path, world, "r1", strategy="rolling", batch=2)
    assert _runs(world) == {"web1": 1, "web2": 0, "web3": 0}
    assert _stages(world) == [
        ("web1", True, None),
        ("web2", False, "web1"),
        ("web3", False, "web1"),
    ]
    per_host = _fresh("web1", "web2")
    _deploy(tmp_path / "each", per_host, "r1", strategy="rolling", release_on="each")
    assert _runs(per_host) == {"web1": 1, "web2": 1}


def test_a_rollback_stages_without_any_command(tmp_path: Path) -> None:
    world = _fresh("web1", "web2")
    _deploy(tmp_path, world, "r1")
    _deploy(tmp_path, world, "r2")
    world.log.clear()
    fleets.rollback(SPEC, make_fleet(tmp_path / "back", world), Silent(), None, 5)
    assert _stages(world) == [("web1", False, None), ("web2", False, None)]
    assert _runs(world) == {"web1": 1, "web2": 0}


def test_the_plan_runs_the_setup_only_on_the_host_a_deploy_would(tmp_path: Path) -> None:
    world = _fresh("web1", "web2")
    fleets.plans(SPEC, make_fleet(tmp_path, world), "r1")
    asked = {h: (r.release_cmd, r.setup_done_on) for h, r in world.log if isinstance(r, p.Plan)}
    assert asked == {"web1": (True, None), "web2": (False, "web1")}
    world.log.clear()
    world.hosts["web2"].setup = SetupRecord("t", "r0", INIT_DB)
    fleets.plans(SPEC, make_fleet(tmp_path, world), "r1")
    asked = {h: (r.release_cmd, r.setup_done_on) for h, r in world.log if isinstance(r, p.Plan)}
    assert asked == {"web1": (True, "web2"), "web2": (False, "web2")}
    world.log.clear()
    fleets.plans(SPEC, make_fleet(tmp_path, world, release_on="each"), "r1")
    asked = {h: (r.release_cmd, r.setup_done_on) for h, r in world.log if isinstance(r, p.Plan)}
    assert asked == {"web1": (True, None), "web2": (True, None)}
