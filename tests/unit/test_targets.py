"""Opening a target: the kind comes from the spec, and an ssh target needs nothing local."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.errors import HostError
from shipyard.spec.model import parse_spec
from shipyard.targets import open_target
from shipyard.targets.local import LocalTarget
from shipyard.targets.ssh import SSHTarget

BASE = {"name": "web", "entry": "web:app"}
NO_SUCH_USER = "nosuchuser-sy"


def test_an_ssh_target_needs_no_app_user_on_this_machine(tmp_path: Path) -> None:
    targets = {"prod": {"hosts": ["web1.example"], "app_user": NO_SUCH_USER}}
    spec = parse_spec({**BASE, "targets": targets}, tmp_path / "shipyard.toml")
    target = open_target(tmp_path, spec, "prod", tmp_path / "cache")
    try:
        assert isinstance(target, SSHTarget)
        assert target.spec.target("prod").run_user() == NO_SUCH_USER
    finally:
        target.close()  # no host was reached: nothing to close but the (unopened) fleet


@pytest.mark.skipif(os.geteuid() != 0, reason="the app user is looked up only as root")
def test_the_local_target_looks_its_app_user_up_when_it_acts(tmp_path: Path) -> None:
    targets = {"box": {"app_user": NO_SUCH_USER, "base_dir": str(tmp_path / "base")}}
    spec = parse_spec({**BASE, "targets": targets}, tmp_path / "shipyard.toml")
    target = open_target(tmp_path, spec, "box", tmp_path / "cache")
    assert isinstance(target, LocalTarget)
    with pytest.raises(HostError, match=f"the app user '{NO_SUCH_USER}' does not exist"):
        target.machine  # noqa: B018 - the lookup is the point
