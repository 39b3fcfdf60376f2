"""Where an ssh target's certificate goes (fake agents, no ssh): to the lb when there is
one, with its key, and the web hosts behind it get only the word that HTTPS ends there;
without an lb, each web host gets it; ACME without an lb is refused before any build."""

from __future__ import annotations

from pathlib import Path

import pytest
from fleetfakes import FakeBuild, FakeFleet, FakeHost, example_spec, make_fleet

from shipyard.errors import UsageError
from shipyard.events import Silent
from shipyard.fleet import fleet as fleets
from shipyard.host import protocol as p
from shipyard.spec.model import Spec

OLD, NEW = "old111", "new222"
CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n"
TLS = {"mode": "files", "certificate": "certs/c.pem", "key": "certs/k.pem"}


def _world(*names: str) -> FakeFleet:
    return FakeFleet(
        {name: FakeHost(live=OLD, slot="blue", installed=[OLD], history=[]) for name in names}
    )


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "certs").mkdir(parents=True)
    (project / "certs" / "c.pem").write_bytes(CERT)
    (project / "certs" / "k.pem").write_bytes(KEY)
    return project


def _deploy(tmp_path: Path, world: FakeFleet, spec: Spec, lb: str | None) -> None:
    fleet = make_fleet(tmp_path, world, lb=lb)
    build = FakeBuild(fleet.cache, NEW)
    fleets.deploy(_project(tmp_path), spec, fleet, Silent(), lock_wait=7, builder=build.builder())


def test_with_an_lb_the_certificate_and_key_go_to_the_lb_only(tmp_path: Path) -> None:
    world = _world("web1", "web2", "lb1")
    spec = example_spec(domains=["app.example.com"], tls=TLS)
    _deploy(tmp_path, world, spec, lb="lb1")
    assert world.tls_files["lb1"] == {"certificate": CERT, "key": KEY}
    assert world.tls_files["web1"] == world.tls_files["web2"] == {}
    (lb,) = world.requests(p.Tls, "lb1")
    assert lb.settings.listen == "0.0.0.0:443" and not lb.settings.behind_lb
    for host in ("web1", "web2"):
        (web,) = world.requests(p.Tls, host)
        assert web.settings.behind_lb
        # HTTPS is known to the web host before its switch renders the site
        ops = world.ops(host)
        assert ops.index("tls") < ops.index("stage")
    # the lb learns of it before its site is rendered
    assert world.ops("lb1").index("tls") < world.ops("lb1").index("lb")
    # the key is in no request message: it travels in the payload only
    assert all(b"c2VjcmV0" not in r.model_dump_json().encode() for _, r in world.log)


def test_without_an_lb_each_web_host_gets_the_certificate(tmp_path: Path) -> None:
    world = _world("web1", "web2")
    _deploy(tmp_path, world, example_spec(domains=["app.example.com"], tls=TLS), lb=None)
    for host in ("web1", "web2"):
        assert world.tls_files[host] == {"certificate": CERT, "key": KEY}
        (request,) = world.requests(p.Tls, host)
        assert not request.settings.behind_lb


def test_no_tls_tells_every_host_https_is_off(tmp_path: Path) -> None:
    world = _world("web1", "lb1")
    _deploy(tmp_path, world, example_spec(), lb="lb1")
    assert [r.settings for r in world.requests(p.Tls)] == [None, None]


def test_acme_without_an_lb_is_refused_before_the_build(tmp_path: Path) -> None:
    """The spec refuses it for its own targets (test_spec_tls.py); a fleet checks again."""
    world = _world("web1")
    spec = example_spec(domains=["app.example.com"], tls={"mode": "acme", "email": "o@x.io"})
    fleet = make_fleet(tmp_path, world)
    build = FakeBuild(fleet.cache, NEW)
    with pytest.raises(UsageError, match="needs an `lb`"):
        fleets.deploy(_project(tmp_path), spec, fleet, Silent(), builder=build.builder())
    assert world.log == [] and build.calls == []
