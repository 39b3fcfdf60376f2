"""Fixtures for tests against real SSH hosts: network namespaces, each with its own sshd.

No skipping: CI runs as root with iproute2 and OpenSSH, so a machine that cannot build the hosts
is a broken test machine and the fixture fails with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from netns import Fleet, FleetError, FleetFactory, preflight

WEB_HOSTS = 3  # the shared fleet: web1..web3 behind lb1
WITH_LB = True


def _open(web: int, lb: bool) -> Fleet:
    try:
        preflight()
        return Fleet(web=web, lb=lb)
    except FleetError as err:
        pytest.fail(f"cannot create test hosts: {err}", pytrace=False)


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    """Hosts shared by a test module; tests that break a host use make_fleet instead."""
    with _open(WEB_HOSTS, WITH_LB) as shared:
        yield shared


@pytest.fixture
def make_fleet() -> Iterator[FleetFactory]:
    """A factory for fleets of the test's own (closed when the test ends): make_fleet(web=1)."""
    made: list[Fleet] = []

    def make(web: int = 3, lb: bool = True) -> Fleet:
        made.append(_open(web, lb))
        return made[-1]

    yield make
    for one in reversed(made):
        one.close()


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """shipyard's build cache (wheels, artifacts), warm across the fleet tests."""
    return tmp_path_factory.mktemp("cache")
