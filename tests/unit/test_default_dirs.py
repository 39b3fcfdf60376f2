"""The local target's default base: per user, except root's, which lives where nginx's own
workers can reach it, unless apps already live in root's older per-user base."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.targets import dirs


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SHIPYARD_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_a_user_gets_the_xdg_data_directory(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert dirs.default_base_dir() == home / ".local" / "share" / "shipyard"
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    assert dirs.default_base_dir() == home / "data" / "shipyard"


def test_root_gets_srv(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert dirs.default_base_dir() == Path("/srv/shipyard")
    # only the runtime there, no app: nothing to keep
    (home / ".local" / "share" / "shipyard" / ".shipyard").mkdir(parents=True)
    assert dirs.default_base_dir() == Path("/srv/shipyard")


def test_root_keeps_the_base_its_apps_already_live_in(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    (home / ".local" / "share" / "shipyard" / "flaskr").mkdir(parents=True)
    assert dirs.default_base_dir() == home / ".local" / "share" / "shipyard"


def test_shipyard_home_wins(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setenv("SHIPYARD_HOME", str(home / "elsewhere"))
    assert dirs.default_base_dir() == home / "elsewhere"
