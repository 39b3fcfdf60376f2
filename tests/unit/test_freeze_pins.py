"""`shipyard freeze`: the live release's pins from its manifest, through the agent and the view."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from agentfakes import fake_session
from fakes import FakeHost
from fleetfakes import FakeFleet, example_spec, make_fleet
from fleetfakes import FakeHost as FleetHost
from hostkit import make_spec, put_release

from shipyard.cli import views
from shipyard.errors import DeployError, UsageError
from shipyard.fleet.fleet import FleetError
from shipyard.host import protocol as p
from shipyard.host.artifact import Manifest, WheelRef
from shipyard.host.freeze import live_pins
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.state import AppState, save_state
from shipyard.targets.base import Frozen, FrozenPin
from shipyard.targets.ssh import SSHTarget

WHEELS = [
    WheelRef("MarkupSafe-3.0.4-cp311-cp311-manylinux_2_17_x86_64.whl", "aa"),
    WheelRef("flask-3.1.2-py3-none-any.whl", "bb"),
    WheelRef("typing_extensions-4.15.0-py3-none-any.whl", "cc"),
]


def _live(tmp_path: Path) -> AppLayout:
    app = HostLayout(tmp_path / "base").app("flaskr")
    put_release(app, "r1", make_spec())
    manifest = Manifest.from_json((app.release("r1") / "manifest.json").read_text())
    manifest = dataclasses.replace(manifest, wheels=WHEELS)
    (app.release("r1") / "manifest.json").write_text(manifest.to_json())
    save_state(app, AppState(live="r1", slot="blue"))
    return app


def test_the_pins_are_the_manifests_wheels_by_canonical_name(tmp_path: Path) -> None:
    reply = live_pins(_live(tmp_path))
    assert reply == p.FreezeReply(
        release="r1",
        pins=[
            p.FrozenPin(name="flask", version="3.1.2", sha256="bb"),
            p.FrozenPin(name="markupsafe", version="3.0.4", sha256="aa"),
            p.FrozenPin(name="typing-extensions", version="4.15.0", sha256="cc"),
        ],
    )  # the app's own wheel is no dependency: it is not on any index


def test_the_agent_answers_freeze(tmp_path: Path) -> None:
    app = _live(tmp_path)
    session = fake_session(FakeHost(app.host))
    reply = session.handle(p.parse_request({"op": "freeze", "app": "flaskr"}))
    assert isinstance(reply, p.FreezeReply)
    assert [pin.name for pin in reply.pins] == ["flask", "markupsafe", "typing-extensions"]


def test_an_app_not_deployed_has_nothing_to_freeze(tmp_path: Path) -> None:
    app = HostLayout(tmp_path / "base").app("flaskr")
    with pytest.raises(DeployError, match=r"app flaskr is not deployed under .*no live release"):
        live_pins(app)


PINS = [FrozenPin("flask", "3.1.2", "bb"), FrozenPin("markupsafe", "3.0.4", "aa")]


def test_the_view_writes_a_requirements_file_with_hashes_if_asked() -> None:
    found = [Frozen("local", "r1", PINS)]
    assert views.frozen(found, hashes=False, host=None) == (
        "# the live release r1 (shipyard freeze)\nflask==3.1.2\nmarkupsafe==3.0.4\n"
    )
    assert views.frozen(found, hashes=True, host=None).splitlines()[1:] == [
        "flask==3.1.2 \\",
        "    --hash=sha256:bb",
        "markupsafe==3.0.4 \\",
        "    --hash=sha256:aa",
    ]


def test_hosts_that_differ_need_host() -> None:
    found = [Frozen("web1", "r1", PINS), Frozen("web2", "r2", PINS[:1])]
    with pytest.raises(UsageError, match=r"different releases \(web1: r1, web2: r2\)"):
        views.frozen(found, hashes=False, host=None)
    assert views.frozen(found, hashes=False, host="web2").splitlines()[1:] == ["flask==3.1.2"]
    with pytest.raises(UsageError, match=r"--host 'web3' is not a web host"):
        views.frozen(found, hashes=False, host="web3")


def _ssh_target(tmp_path: Path, world: FakeFleet) -> SSHTarget:
    target = SSHTarget(tmp_path, example_spec(), "prod", tmp_path / "cache")
    target._fleet = make_fleet(tmp_path, world, lb="lb1")
    return target


def test_an_ssh_target_asks_each_web_host_s_agent(tmp_path: Path) -> None:
    world = FakeFleet(
        {"web1": FleetHost(live="r1"), "web2": FleetHost(live="r22"), "lb1": FleetHost()}
    )
    found = _ssh_target(tmp_path, world).freeze()
    assert found == [
        Frozen("web1", "r1", [FrozenPin("flask", "3.1.2", "ab")]),
        Frozen("web2", "r22", [FrozenPin("flask", "3.1.3", "ab")]),
    ]
    assert world.requests(p.Freeze) == [p.Freeze(app="flaskr")] * 2  # never the lb
    with pytest.raises(UsageError, match="different releases"):
        views.frozen(found, hashes=False, host=None)


def test_an_ssh_target_not_deployed_says_where(tmp_path: Path) -> None:
    world = FakeFleet({"web1": FleetHost(), "lb1": FleetHost()})
    with pytest.raises(FleetError, match=r"web1.*not deployed"):
        _ssh_target(tmp_path, world).freeze()
