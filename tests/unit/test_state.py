"""Release history and the deploy lock."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import pytest

from shipyard.errors import LockHeld, ShipyardError
from shipyard.host.layout import HostLayout
from shipyard.host.release import load_config
from shipyard.host.state import AppState, ReleaseRecord, app_lock, load_state, save_state


def test_state_round_trips_and_tracks_the_live_release(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("web")
    state = AppState()
    state.upsert(ReleaseRecord(id="a1", created="t1"))
    state.upsert(ReleaseRecord(id="b2", created="t2"))
    state.set_status("a1", "live", deployed_at="t3")
    state.live, state.slot = "a1", "blue"
    state.log("deploy", "a1", "slot blue")
    app.root.mkdir(parents=True)
    save_state(app, state)
    loaded = load_state(app)
    assert loaded.live == "a1" and loaded.slot == "blue"
    assert loaded.record("a1") == ReleaseRecord(
        id="a1", created="t1", deployed_at="t3", status="live"
    )
    assert [r.id for r in loaded.releases] == ["b2", "a1"]
    assert loaded.idle_slot() == "green"
    assert loaded.events[-1]["action"] == "deploy"


def test_missing_state_is_empty_and_corrupt_state_is_a_clear_error(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("web")
    assert load_state(app).live is None
    app.root.mkdir(parents=True)
    for text in ("{not json", "[]", '{"releases": [1]}', '{"warm": {"nope": 1}}', '{"rel'):
        app.state_file.write_text(text)
        with pytest.raises(ShipyardError, match=r"state\.json is corrupt") as caught:
            load_state(app)
        assert caught.value.hint and "deploy again" in caught.value.hint, text


def test_a_corrupt_config_file_is_a_clear_error_that_says_how_to_repair(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("web")
    app.shared.mkdir(parents=True)
    assert load_config(app) == {}
    for text in ('{"SECRET": "ab', "[]", '{"N": 1}', ""):
        app.config_file.write_text(text)
        with pytest.raises(ShipyardError, match=r"config\.json is corrupt") as caught:
            load_config(app)
        assert caught.value.hint and "config set" in caught.value.hint, text
    app.config_file.write_text('{"A": "1"}')
    assert load_config(app) == {"A": "1"}


def _hold_lock(base: str, ready: multiprocessing.synchronize.Event, seconds: float) -> None:
    app = HostLayout(Path(base)).app("web")
    with app_lock(app, "deploy", 0):
        ready.set()
        time.sleep(seconds)


def test_a_second_deploy_fails_naming_the_holder(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("web")
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(
        target=_hold_lock, args=(str(tmp_path), ready, 1.0)
    )
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(LockHeld) as err, app_lock(app, "deploy", 0.2):
            pass
        assert f"pid {holder.pid}" in err.value.message
        assert "deploy by" in err.value.message
        assert err.value.exit_code == 75
    finally:
        holder.join()


def test_the_lock_is_released_when_its_holder_dies(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("web")
    ready = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(
        target=_hold_lock, args=(str(tmp_path), ready, 60.0)
    )
    holder.start()
    assert ready.wait(10)
    holder.kill()
    holder.join()
    with app_lock(app, "deploy", 2):
        assert app.lock_file.read_text().startswith("deploy by")


def test_rollback_goes_to_the_last_release_that_went_live_within_one_second(
    tmp_path: Path,
) -> None:
    from shipyard.host.layout import HostLayout
    from shipyard.host.lifecycle import rollback_target
    from shipyard.host.release import COMPLETE

    app = HostLayout(tmp_path).app("demo")
    state = AppState()
    for seq, rid in enumerate(("r0", "r1", "r2"), 1):
        (app.release(rid)).mkdir(parents=True)
        (app.release(rid) / COMPLETE).touch()
        # the same second for all three: only the order of going live tells them apart
        state.upsert(
            ReleaseRecord(rid, created="2026-01-01T00:00:00Z", deployed_at="2026-01-01T00:00:01Z")
        )
        state.set_status(rid, "live", deployed_seq=state.next_seq())
        assert state.record(rid) is not None and state.record(rid).deployed_seq == seq  # type: ignore[union-attr]
    state.live = "r2"
    assert rollback_target(app, state, None) == "r1"
