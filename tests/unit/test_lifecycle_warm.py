"""The rollback window on a fake host: the slot a commit leaves kept warm, handed on with the
app's lock to be retired later; a deploy letting it go early; a stale answer while starting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import HealthCheckFailed
from shipyard.host import lifecycle
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.state import (
    AppState,
    HeldLock,
    ReleaseRecord,
    WarmSlot,
    app_lock,
    load_state,
    save_state,
)
from shipyard.host.switch import Switch
from shipyard.spec.model import Spec

SPEC = make_spec(processes={"worker": "python -m flaskr.worker"})
TINY = 0.001  # a window that has passed by the time the work looks: keep_warm never sleeps


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _machine(host: FakeHost) -> lifecycle.Machine:
    return lifecycle.Machine(
        host.conn, host.layout, host.layout.wheels, LISTEN, servers=host.servers
    )


def _installed(host: FakeHost, *releases: str, spec: Spec = SPEC) -> tuple[AppLayout, AppState]:
    app = host.layout.app(spec.name)
    state = AppState()
    for release_id in releases:
        put_release(app, release_id, spec)
        state.upsert(ReleaseRecord(id=release_id, created="2026-01-01"))
    return app, state


def _stage(host: FakeHost, app: AppLayout, state: AppState, release_id: str) -> Switch:
    return lifecycle.stage(
        _machine(host), host.supervisor, app, release_id, state, "deploy", release_cmd=False
    )


def _commit_warm(
    host: FakeHost, app: AppLayout, state: AppState, release_id: str, lock: HeldLock
) -> list[Callable[[], None]]:
    """Stage and commit `release_id` with a window; the work it hands on, not yet run."""
    later: list[Callable[[], None]] = []
    switch = _stage(host, app, state, release_id)
    lifecycle.commit(app, switch, state, "deploy", later.append, window=TINY, lock=lock)
    return later


def _retired(host: FakeHost) -> list[str]:
    return [line.split()[-1] for line in host.journal if line.startswith("supervisor retire")]


def test_a_commit_with_a_window_keeps_the_old_slot_running_and_hands_its_retirement_on(
    host: FakeHost,
) -> None:
    app, state = _installed(host, "r1", "r2")
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    with app_lock(app, "deploy", 0) as lock:
        later = _commit_warm(host, app, state, "r2", lock)
        saved = load_state(app)
        assert (saved.live, saved.slot) == ("r2", "green")
        assert saved.warm is not None and (saved.warm.slot, saved.warm.release) == ("blue", "r1")
        # nothing retired yet, and the lock is still this command's
        assert host.supervisor.state("flaskr-web-blue") == "RUNNING"
        assert _retired(host) == [] and len(later) == 1 and lock.held
        later[0]()
        assert not lock.held  # let go of while it waited for the window
    assert _retired(host) == ["flaskr-web-blue", "flaskr-worker-blue"]
    assert PurePosixPath(app.program_file("blue")) not in host.conn.files
    assert load_state(app).warm is None and load_state(app).live == "r2"


def test_websockets_open_after_their_drain_stop_the_warm_slot_before_its_window(
    host: FakeHost,
) -> None:
    spec = make_spec(server={"websocket_drain": 0})
    app, state = _installed(host, "r1", "r2", spec=spec)
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    host.nginx.linger = True
    host.connections[app.socket("blue")] = 1
    with app_lock(app, "deploy", 0) as lock:
        later: list[Callable[[], None]] = []
        switch = _stage(host, app, state, "r2")
        lifecycle.commit(app, switch, state, "deploy", later.append, window=3600, lock=lock)
        assert load_state(app).warm is not None
        later[0]()  # returns at once: the window of an hour is not waited for
        assert not lock.held
    assert _retired(host) == ["flaskr-web-blue"]
    assert load_state(app).warm is None and load_state(app).live == "r2"


def test_without_the_lock_a_window_is_not_kept_and_the_old_slot_retires_at_once(
    host: FakeHost,
) -> None:
    app, state = _installed(host, "r1", "r2")
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    lifecycle.commit(app, _stage(host, app, state, "r2"), state, "deploy", window=60, lock=None)
    assert load_state(app).warm is None
    assert _retired(host) == ["flaskr-web-blue", "flaskr-worker-blue"]


def test_a_deploy_that_took_the_warm_slot_meanwhile_is_left_alone(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2", "r3")
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    with app_lock(app, "deploy", 0) as lock:
        later = _commit_warm(host, app, state, "r2", lock)
    # the next deploy let the warm release go, put its own on that slot, and keeps r2 warm
    taken = load_state(app)
    taken.warm, taken.live, taken.slot = WarmSlot("green", "r2", 1e12), "r3", "blue"
    save_state(app, taken)
    later[0]()
    assert _retired(host) == [] and load_state(app) == taken  # r2's window is left as it is


def test_a_warm_slot_that_serves_again_is_not_retired_but_no_longer_warm(
    host: FakeHost,
) -> None:
    app, state = _installed(host, "r1", "r2")
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    with app_lock(app, "deploy", 0) as lock:
        later = _commit_warm(host, app, state, "r2", lock)
    back = load_state(app)
    back.live, back.slot = "r1", "blue"  # traffic went back to the warm slot
    save_state(app, back)
    later[0]()
    assert _retired(host) == []
    assert load_state(app).warm is None and load_state(app).slot == "blue"


def test_a_deploy_lets_the_warm_release_go_while_it_builds(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2")
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    with app_lock(app, "deploy", 0) as lock:
        _commit_warm(host, app, state, "r2", lock)  # its retirement is never run
    state = load_state(app)
    lifecycle.let_warm_go(_machine(host), app, state)
    assert _retired(host) == ["flaskr-web-blue", "flaskr-worker-blue"]
    assert PurePosixPath(app.program_file("blue")) not in host.conn.files
    assert state.warm is None and load_state(app).warm is None


def test_with_supervisord_down_letting_the_warm_release_go_only_forgets_it(
    host: FakeHost,
) -> None:
    app, state = _installed(host, "r1")
    state.warm = WarmSlot("blue", "r1", 1e12)
    save_state(app, state)
    host.supervisor.running = False
    lifecycle.let_warm_go(_machine(host), app, state)
    assert _retired(host) == [] and host.conn.recorded == []
    assert load_state(app).warm is None


def test_with_nothing_warm_letting_go_changes_nothing(host: FakeHost) -> None:
    app, state = _installed(host, "r1")
    lifecycle.let_warm_go(_machine(host), app, state)
    assert host.journal == [] and not app.state_file.exists()


def test_a_start_answered_by_another_release_is_not_healthy(host: FakeHost) -> None:
    spec = make_spec(healthcheck={"path": "/health", "timeout": 0.05})
    app, state = _installed(host, "r1", spec=spec)
    lifecycle.commit(app, _stage(host, app, state, "r1"), state, "deploy")
    lifecycle.stop(spec, _machine(host))
    host.nginx.stale = "r0"  # nginx still sends requests to an older release's server
    with pytest.raises(HealthCheckFailed, match=r"not healthy at .*: answered by release r0"):
        lifecycle.start(spec, _machine(host))
