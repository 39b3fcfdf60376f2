"""Spec values of the wrong type or out of range are named, never coerced: TOML has real
booleans, integers and strings, so `workers = true` is a mistake, not a 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import SpecError
from shipyard.spec.model import ServerType, parse_spec

BASE = {"name": "web", "entry": "web:app"}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"workers": True}}, "server.workers"),
        ({"keep": "5"}, "keep"),
        ({"tests": {"enabled": "yes"}}, "tests.enabled"),
        ({"healthcheck": {"status": []}}, "healthcheck.status"),
        ({"healthcheck": {"status": [999]}}, "healthcheck.status[0]"),
        ({"healthcheck": {"status": ["200"]}}, "healthcheck.status[0]"),
        ({"healthcheck": {"path": "/hea\x00lth"}}, "healthcheck.path"),
        ({"healthcheck": {"path": "/a b"}}, "healthcheck.path"),
        ({"healthcheck": {"path": "health"}}, "healthcheck.path"),
        ({"server": {"type": "tomcat"}}, "server.type"),
    ],
)
def test_a_wrong_type_or_value_is_named(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({**BASE, **raw}, Path("/p/shipyard.toml"))
    assert f"{key}:" in err.value.message, err.value.message


def test_right_types_still_parse_and_enums_take_their_names() -> None:
    spec = parse_spec(
        {
            **BASE,
            "kind": "wsgi",
            "keep": 5,
            "server": {"type": "gunicorn", "workers": 3},
            "healthcheck": {"path": "/health", "status": [200, 204], "timeout": 5},
            "tests": {"enabled": False},
        },
        Path("/p/shipyard.toml"),
    )
    assert spec.server.type is ServerType.GUNICORN and spec.server.workers == 3
    assert spec.healthcheck.healthy_statuses == (200, 204) and spec.keep == 5
    assert spec.healthcheck.timeout == 5.0  # an integer is a fine float
