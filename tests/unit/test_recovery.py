"""Recovery on a fake host: a switch left at each of its steps (as a killed process leaves
it), then the next command's recovery; and the guard every reload of the shared nginx runs.

A kill cannot be simulated in-process (every handler would run), so each test drives the
switch's own steps up to where the kill would stop it and drops the switch there.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.events import Silent
from shipyard.host import journal, lifecycle
from shipyard.host.journal import Entry, Side
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.state import AppState, ReleaseRecord, app_lock, load_state, save_state
from shipyard.host.switch import Switch

SPEC = make_spec()


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _machine(host: FakeHost) -> lifecycle.Machine:
    return lifecycle.Machine(
        host.conn, host.layout, host.layout.wheels, LISTEN, servers=host.servers
    )


def _r1_live(host: FakeHost) -> tuple[AppLayout, AppState]:
    """r1 serving from blue, r2 installed beside it."""
    app = host.layout.app(SPEC.name)
    state = AppState()
    for release_id in ("r1", "r2"):
        put_release(app, release_id, SPEC)
        state.upsert(ReleaseRecord(id=release_id, created="2026-01-01T00:00:00Z"))
    save_state(app, state)
    machine = _machine(host)
    switch = lifecycle.stage(
        machine, host.supervisor, app, "r1", state, "deploy", release_cmd=False
    )
    lifecycle.commit(app, switch, state, "deploy")
    return app, load_state(app)


def _staged_r2(host: FakeHost, app: AppLayout, state: AppState, action: str = "deploy") -> Switch:
    switch = lifecycle.stage(
        _machine(host), host.supervisor, app, "r2", state, action, release_cmd=False
    )
    assert journal.load(app) == Entry(
        app=app.name,
        action=action,
        phase="stage",
        to=Side("r2", "green"),
        origin=Side("r1", "blue"),
        pid=os.getpid(),
    )
    return switch


def _left_at(host: FakeHost, app: AppLayout, state: AppState, step: str) -> None:
    """Run r2's switch until `step`, where its process dies."""
    switch = _staged_r2(host, app, state)
    if step == "stage":
        return
    previous = host.conn.read(PurePosixPath(app.site_file))
    switch._journal("reload", previous)
    if step == "site written":  # killed before nginx's reload
        host.conn.files[PurePosixPath(app.site_file)] = (
            b"# Managed by shipyard: app flaskr, release r2, slot green.\n"
        )
        return
    switch._point_nginx_at("green", "r2")
    if step == "reloaded":
        return
    assert step == "retire"
    lifecycle.commit(app, switch, state, "deploy", finish=lambda work: None)


def _agrees(host: FakeHost, app: AppLayout, served: Side) -> None:
    """nginx, state.json, `current` and the slots say the same, and the journal is gone."""
    state = load_state(app)
    assert Side(host.nginx.release_served() or "", _served_slot(host)) == served
    assert (state.live, state.slot) == (served.release, served.slot)
    assert host.conn.symlinks[PurePosixPath(app.current)] == f"releases/{served.release}"
    other = "blue" if served.slot == "green" else "green"
    assert host.supervisor.state(f"flaskr-web-{served.slot}") == "RUNNING"
    assert host.supervisor.state(f"flaskr-web-{other}") in (None, "STOPPED")
    assert journal.load(app) is None


def _served_slot(host: FakeHost) -> str:
    served = list(host.nginx.serving.values())
    return Path(served[0].socket).stem if served else ""


@pytest.mark.parametrize("step", ["stage", "site written", "reloaded"])
def test_a_switch_left_before_it_was_recorded_is_undone_or_completed_by_what_nginx_serves(
    host: FakeHost, step: str
) -> None:
    app, state = _r1_live(host)
    _left_at(host, app, state, step)
    progress = Silent()
    line = lifecycle.recover_switch(_machine(host), app, progress)
    if step == "reloaded":  # nginx serves r2 on green, which runs: completed
        assert line is not None and "completed, r2 on green serves" in line
        _agrees(host, app, Side("r2", "green"))
        assert load_state(app).record("r1").status == "previous"  # type: ignore[union-attr]
        assert load_state(app).record("r2").status == "live"  # type: ignore[union-attr]
    else:
        assert line is not None and "undone, r1 on blue serves" in line
        _agrees(host, app, Side("r1", "blue"))
        assert b"release r1, slot blue" in host.conn.files[PurePosixPath(app.site_file)]
    assert progress.warnings == [line]
    assert load_state(app).events[-1]["action"] == "recover"


def test_a_switch_left_before_retiring_the_old_slot_retires_it(host: FakeHost) -> None:
    app, state = _r1_live(host)
    _left_at(host, app, state, "retire")
    assert journal.load(app).phase == "retire"  # type: ignore[union-attr]
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"
    host.journal.clear()
    line = lifecycle.recover_switch(_machine(host), app)
    assert line is not None and "completed" in line
    _agrees(host, app, Side("r2", "green"))
    # nginx's old workers are waited for before the old slot stops
    reload = host.journal.index("nginx reload (drain=True)")
    assert reload < host.journal.index("supervisor retire flaskr-web-blue")


def test_an_interrupted_config_change_is_undone_while_its_old_side_runs(host: FakeHost) -> None:
    app, state = _r1_live(host)
    switch = lifecycle.stage(
        _machine(host),
        host.supervisor,
        app,
        "r1",
        state,
        "config set",
        release_cmd=False,
        config={"NEW": "1"},
    )
    switch._journal("reload", host.conn.read(PurePosixPath(app.site_file)))
    switch._point_nginx_at("green", "r1")
    line = lifecycle.recover_switch(_machine(host), app)
    assert line is not None and "config set" in line and "undone" in line
    _agrees(host, app, Side("r1", "blue"))


def test_every_command_that_takes_the_lock_recovers_first(host: FakeHost) -> None:
    app, state = _r1_live(host)
    _left_at(host, app, state, "reloaded")
    progress = Silent()
    outcome = lifecycle.rollback(SPEC, _machine(host), progress, None)
    assert any("recovered an interrupted deploy" in w for w in progress.warnings)
    assert outcome.release == "r1"  # the recovered r2 went live; the rollback left it


def test_status_start_and_stop_recover_only_when_the_lock_is_free(host: FakeHost) -> None:
    app, state = _r1_live(host)
    _left_at(host, app, state, "reloaded")
    with app_lock(app, "deploy", 0):  # the switch's process still runs: not unfinished
        lifecycle.recover_if_free(_machine(host), app)
        assert journal.load(app) is not None
    lifecycle.stop(SPEC, _machine(host))
    assert journal.load(app) is None
    assert load_state(app).live == "r2"


def test_no_journal_no_recovery(host: FakeHost) -> None:
    app, _ = _r1_live(host)
    host.journal.clear()
    assert lifecycle.recover_switch(_machine(host), app) is None
    assert host.journal == []


def _dead_switch(base: Path, phase: str, site: str, previous: str | None) -> AppLayout:
    app = HostLayout(base).app("other")
    app.root.mkdir(parents=True)
    app.lock_file.touch()
    app.site_file.parent.mkdir(parents=True, exist_ok=True)
    app.site_file.write_text(site)
    entry = Entry("other", "deploy", phase, Side("r2", "green"), Side("r1", "blue"), 1, previous)  # type: ignore[arg-type]
    journal.write(app, entry)
    return app


def test_a_reload_of_the_shared_nginx_puts_back_a_dead_switchs_site_file(tmp_path: Path) -> None:
    app = _dead_switch(tmp_path, "reload", "new site\n", "old site\n")
    journal.put_back_dead_sites(app.host)
    assert app.site_file.read_text() == "old site\n"
    first = _dead_switch(tmp_path / "first", "record", "new site\n", None)
    journal.put_back_dead_sites(first.host)
    assert not first.site_file.exists()  # its first deploy: no site before it


@pytest.mark.parametrize("phase", ["stage", "retire"])
def test_the_reload_guard_leaves_steps_that_hold_no_half_made_site(
    tmp_path: Path, phase: str
) -> None:
    app = _dead_switch(tmp_path, phase, "site\n", "old site\n")
    journal.put_back_dead_sites(app.host)
    assert app.site_file.read_text() == "site\n"


def test_the_reload_guard_leaves_a_switch_that_is_alive(tmp_path: Path) -> None:
    app = _dead_switch(tmp_path, "reload", "new site\n", "old site\n")
    with app_lock(app, "deploy", 0):
        journal.put_back_dead_sites(app.host)
    assert app.site_file.read_text() == "new site\n"


@pytest.mark.parametrize("step", ["switch:after-site-written", "switch:after-reload"])
def test_an_interruption_in_the_reload_step_switches_back_and_leaves_no_journal(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """SIGTERM raises Terminated (a KeyboardInterrupt) where the switch is, as Ctrl-C does."""
    from shipyard.errors import Terminated
    from shipyard.host import faults

    app, state = _r1_live(host)
    old_site = host.conn.files[PurePosixPath(app.site_file)]

    def interrupted(name: str) -> None:
        if name == step:
            raise Terminated(15)

    monkeypatch.setattr(faults, "point", interrupted)
    switch = _staged_r2(host, app, state)
    with pytest.raises(Terminated):
        lifecycle.commit(app, switch, state, "deploy")
    assert host.conn.files[PurePosixPath(app.site_file)] == old_site
    assert host.nginx.release_served() == "r1"  # nginx reloaded with the old site again
    assert host.supervisor.state("flaskr-web-green") is None  # the new slot stopped
    assert journal.load(app) is None
    assert (load_state(app).live, load_state(app).slot) == ("r1", "blue")
