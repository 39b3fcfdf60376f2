"""Hermetic tests: no developer HOME, XDG dirs or shipyard env leak into a test."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _hermetic_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for var in ("XDG_DATA_HOME", "XDG_CACHE_HOME", "SHIPYARD_HOME", "SHIPYARD_CACHE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def example_spec_dict() -> dict[str, object]:
    return {
        "name": "flaskr",
        "entry": "flaskr:create_app()",
        "release": "flask --app flaskr init-db",
        "static": {"/static": "flaskr/static"},
        "healthcheck": {"path": "/health"},
    }


REPO = Path(__file__).resolve().parent.parent
