"""The one-time setup command: the decision, its record, and the state machine on a fake host
running it on the first deploy only, and never on redeploys, rollbacks or restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import CommandFailed, ShipyardError
from shipyard.events import Silent
from shipyard.host import lifecycle
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.setup_command import (
    ASSUMED,
    NO_SETUP,
    SetupRecord,
    load_setup,
    save_setup,
    setup_for,
    setup_step,
)
from shipyard.host.state import AppState, ReleaseRecord, load_state
from shipyard.spec.model import Spec

INIT_DB = "flask --app flaskr init-db"
UPGRADE = "flask --app flaskr db upgrade"
SPEC = make_spec(setup=INIT_DB, release=UPGRADE)
DONE = SetupRecord("t0", "r0", INIT_DB)


# --- the decision -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "done", "live", "run_here", "done_on", "run", "how", "note"),
    [
        ("", None, None, True, None, False, None, ""),
        (INIT_DB, None, None, True, None, True, None, "first deploy here: run the setup"),
        (INIT_DB, DONE, None, True, None, False, None, "setup is done here already (it ran"),
        (INIT_DB, DONE, "r0", True, "web1", False, None, "setup is done here already"),
        (INIT_DB, None, "r0", True, None, False, ASSUMED, "setup treated as done, not run"),
        (
            INIT_DB,
            None,
            None,
            False,
            "web1",
            False,
            "on web1",
            "setup is done for this target on web1",
        ),
        (
            INIT_DB,
            None,
            None,
            True,
            "web1",
            False,
            "on web1",
            "setup is done for this target on web1",
        ),
        (INIT_DB, None, None, False, None, False, None, ""),
    ],
)
def test_the_setup_runs_only_where_it_was_never_done_and_the_app_never_served(
    command: str,
    done: SetupRecord | None,
    live: str | None,
    run_here: bool,
    done_on: str | None,
    run: bool,
    how: str | None,
    note: str,
) -> None:
    step = setup_step(command, done, live, "r1", "t1", run_here=run_here, done_on=done_on)
    assert step.run is run
    assert (step.record.how if step.record else None) == how
    assert step.note.startswith(note) if note else step.note == ""
    if step.record is not None:
        assert (step.record.at, step.record.release, step.record.command) == ("t1", "r1", command)


def test_the_record_round_trips_a_missing_one_is_none_and_a_corrupt_one_is_an_error(
    tmp_path: Path,
) -> None:
    app = HostLayout(tmp_path).app("flaskr")
    assert load_setup(app) is None
    save_setup(app, SetupRecord("t1", "r1", INIT_DB, "on web1"))
    assert load_setup(app) == SetupRecord("t1", "r1", INIT_DB, "on web1")
    assert app.setup_file.parent == app.shared  # kept with the data
    app.setup_file.write_text('{"at": "t1"}')
    with pytest.raises(ShipyardError, match=r"setup\.json is corrupt") as raised:
        load_setup(app)
    assert "remove it" in (raised.value.hint or "")


def test_state_files_from_before_the_setup_still_load(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("flaskr")
    app.root.mkdir(parents=True)
    app.state_file.write_text('{"releases": [], "live": "r0", "slot": "blue", "events": []}\n')
    assert load_state(app).live == "r0" and load_setup(app) is None


# --- on a host ------------------------------------------------------------------------------


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _machine(host: FakeHost) -> lifecycle.Machine:
    return lifecycle.Machine(
        host.conn, host.layout, host.layout.wheels, LISTEN, servers=host.servers
    )


def _app(host: FakeHost, *releases: str, spec: Spec = SPEC) -> AppLayout:
    app = host.layout.app(spec.name)
    for release_id in releases:
        put_release(app, release_id, spec)
    return app


def _command(app: AppLayout, release_id: str, slot: str, command: str) -> tuple[str, ...]:
    return (
        str(app.host.launcher),
        str(app.env_file(slot)),
        str(app.release(release_id)),
        *command.split(),
    )


def _one_offs(host: FakeHost) -> list[tuple[str, ...]]:
    """The setup and release commands run so far, as the last words of their argv."""
    launcher = str(host.layout.launcher)
    return [argv[3:] for argv in host.conn.commands if argv[0] == launcher]


def _deploy(
    host: FakeHost,
    app: AppLayout,
    release_id: str,
    *,
    release_cmd: bool = True,
    setup_on: str | None = None,
    progress: Silent | None = None,
) -> None:
    state = load_state(app)
    state.upsert(ReleaseRecord(id=release_id, created="2026-01-01T00:00:00Z"))
    lifecycle.switch(
        _machine(host),
        host.supervisor,
        app,
        release_id,
        state,
        "deploy",
        release_cmd=release_cmd,
        setup_on=setup_on,
        progress=progress,
    )


def test_the_first_deploy_runs_setup_then_release_and_later_ones_release_only(
    host: FakeHost,
) -> None:
    app = _app(host, "r1", "r2", "r3")
    host.conn.answer((str(app.host.launcher),))
    told = Silent()
    _deploy(host, app, "r1", progress=told)
    assert _one_offs(host) == [tuple(INIT_DB.split()), tuple(UPGRADE.split())]
    # in the new release's environment: the setup before its server starts, the release
    # command before the server, started held meanwhile, starts its workers
    assert host.conn.commands[0] == _command(app, "r1", "blue", INIT_DB)
    ran = [i for i, line in enumerate(host.journal) if line.startswith("run ")]
    assert "init-db" in host.journal[ran[0]] and "upgrade" in host.journal[ran[1]]
    assert ran[0] < host.journal.index("supervisor start flaskr-web-blue")
    assert ran[1] < host.journal.index(f"remove {app.hold_file('blue')}")
    record = load_setup(app)
    assert record is not None and (record.release, record.command, record.how) == (
        "r1",
        INIT_DB,
        "ran",
    )
    assert told.notes == [f"ran the setup command, once for this app here: {INIT_DB}"]
    for release_id in ("r2", "r3"):
        _deploy(host, app, release_id)
    assert _one_offs(host)[2:] == [tuple(UPGRADE.split())] * 2
    assert load_setup(app) == record


def test_rollbacks_restarts_and_config_changes_never_run_the_setup(host: FakeHost) -> None:
    spec = make_spec(setup=INIT_DB)
    app = _app(host, "r1", "r2", spec=spec)
    host.conn.answer((str(app.host.launcher),))
    _deploy(host, app, "r1")
    _deploy(host, app, "r2")
    assert _one_offs(host) == [tuple(INIT_DB.split())]
    app.setup_file.unlink()  # even with no record: only a deploy decides about the setup
    lifecycle.rollback(spec, _machine(host), Silent(), None)
    lifecycle.restart(spec, _machine(host), Silent())
    lifecycle.restart(spec, _machine(host), Silent(), config={"A": "1"}, action="config set")
    assert _one_offs(host) == [tuple(INIT_DB.split())]
    assert load_setup(app) is None


def test_a_failed_setup_fails_the_deploy_and_runs_again_on_the_next(host: FakeHost) -> None:
    app = _app(host, "r1", "r2")
    host.conn.answer((str(app.host.launcher),))
    failing = _command(app, "r1", "blue", INIT_DB)
    host.conn.answer(failing, exit_code=1, stdout="sqlite3.OperationalError: near 'TABL'")
    with pytest.raises(CommandFailed, match=r"the setup command failed") as failed:
        _deploy(host, app, "r1")
    assert "near 'TABL'" in failed.value.message
    assert "runs it again" in (failed.value.hint or "")
    assert _one_offs(host) == [tuple(INIT_DB.split())]  # and not the release command
    assert load_setup(app) is None and "flaskr-web-blue" not in host.supervisor.programs
    assert {r.id: r.status for r in load_state(app).releases} == {"r1": "failed"}
    _deploy(host, app, "r2")
    assert _one_offs(host)[1:] == [tuple(INIT_DB.split()), tuple(UPGRADE.split())]
    record = load_setup(app)
    assert record is not None and record.release == "r2"


def test_a_setup_that_succeeded_is_recorded_even_when_the_release_fails(host: FakeHost) -> None:
    app = _app(host, "r1", "r2")
    host.conn.answer((str(app.host.launcher),))
    host.conn.answer(_command(app, "r1", "blue", UPGRADE), exit_code=1, stdout="no such table")
    with pytest.raises(CommandFailed, match=r"the release command failed"):
        _deploy(host, app, "r1")
    assert load_setup(app) is not None
    _deploy(host, app, "r2")
    assert _one_offs(host)[2:] == [tuple(UPGRADE.split())]


def test_an_app_live_before_it_had_a_setup_counts_as_set_up(host: FakeHost) -> None:
    app = _app(host, "r1", spec=make_spec(release=UPGRADE))
    _app(host, "r2")
    host.conn.answer((str(app.host.launcher),))
    _deploy(host, app, "r1")
    told = Silent()
    _deploy(host, app, "r2", progress=told)
    assert _one_offs(host) == [tuple(UPGRADE.split())] * 2
    record = load_setup(app)
    assert record is not None and record.how == ASSUMED
    assert told.notes == [
        "setup treated as done, not run: the app was already live here (release r1) when "
        "`setup` appeared in its spec"
    ]


def test_a_fleet_host_records_the_setup_done_on_the_release_host(host: FakeHost) -> None:
    app = _app(host, "r1")
    host.conn.answer((str(app.host.launcher),))
    told = Silent()
    _deploy(host, app, "r1", release_cmd=False, setup_on="web1", progress=told)
    assert _one_offs(host) == []
    record = load_setup(app)
    assert record is not None and record.how == "on web1"
    assert told.notes == ["setup is done for this target on web1: not run here"]


def test_destroy_keeps_the_record_with_the_data_and_purge_forgets_it(host: FakeHost) -> None:
    app = _app(host, "r1")
    host.conn.answer((str(app.host.launcher),))
    _deploy(host, app, "r1")
    lifecycle.destroy(SPEC, _machine(host), purge=False)
    assert load_state(app) == AppState() and load_setup(app) is not None
    _app(host, "r2")
    _deploy(host, app, "r2")  # the data is there: not set up again
    assert _one_offs(host)[2:] == [tuple(UPGRADE.split())]
    lifecycle.destroy(SPEC, _machine(host), purge=True)
    assert load_setup(app) is None
    _app(host, "r3")
    _deploy(host, app, "r3")  # new again
    assert _one_offs(host)[3:] == [tuple(INIT_DB.split()), tuple(UPGRADE.split())]


def test_no_setup_in_the_spec_records_nothing(host: FakeHost) -> None:
    app = _app(host, "r1", spec=make_spec())
    _deploy(host, app, "r1")
    assert load_setup(app) is None
    assert setup_for(app, "", None, "r1", release_cmd=True) == NO_SETUP
    assert setup_for(app, INIT_DB, None, "r1", release_cmd=False) == NO_SETUP  # a rollback
