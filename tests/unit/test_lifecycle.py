"""The release state machine on a fake host: what it records, keeps, prunes and refuses."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import DeployError, HealthCheckFailed, UsageError
from shipyard.events import Silent
from shipyard.host import lifecycle
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.state import AppState, ReleaseRecord, load_state, save_state

SPEC = make_spec()


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _machine(host: FakeHost) -> lifecycle.Machine:
    return lifecycle.Machine(
        host.conn, host.layout, host.layout.wheels, LISTEN, servers=host.servers
    )


def _installed(host: FakeHost, *releases: str) -> tuple[AppLayout, AppState]:
    app = host.layout.app(SPEC.name)
    state = AppState()
    for release_id in releases:
        put_release(app, release_id, SPEC)
        state.upsert(ReleaseRecord(id=release_id, created=f"2026-01-0{len(state.releases) + 1}"))
    return app, state


def _deploy(host: FakeHost, app: AppLayout, state: AppState, release_id: str) -> None:
    machine = _machine(host)
    switch = lifecycle.stage(
        machine, host.supervisor, app, release_id, state, "deploy", release_cmd=False
    )
    lifecycle.commit(app, switch, state, "deploy")


def _statuses(app: AppLayout) -> dict[str, str]:
    return {r.id: r.status for r in load_state(app).releases}


def test_a_commit_records_the_new_release_live_and_the_old_previous(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2")
    _deploy(host, app, state, "r1")
    _deploy(host, app, state, "r2")
    saved = load_state(app)
    assert (saved.live, saved.slot) == ("r2", "green")
    assert _statuses(app) == {"r1": "previous", "r2": "live"}
    assert [r.deployed_seq for r in saved.releases] == [1, 2]
    assert [(e["action"], e["release"], e["detail"]) for e in saved.events] == [
        ("deploy", "r1", "slot blue"),
        ("deploy", "r2", "slot green"),
    ]
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"  # retired by run_now


def test_a_retired_slot_leaves_no_env_file_with_old_secrets(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2")
    app.shared.mkdir(parents=True, exist_ok=True)
    app.config_file.write_text(json.dumps({"API_TOKEN": "old-token"}))
    _deploy(host, app, state, "r1")
    app.config_file.write_text(json.dumps({}))  # `config unset API_TOKEN`, say
    _deploy(host, app, state, "r2")
    blue, green = (PurePosixPath(app.env_file(slot)) for slot in ("blue", "green"))
    assert blue not in host.conn.files  # r1's, with the old token, went with its slot
    assert b"old-token" not in host.conn.files[green]


def test_a_failed_stage_records_the_release_failed_and_keeps_the_live_one(
    host: FakeHost,
) -> None:
    app, state = _installed(host, "r1", "r2")
    _deploy(host, app, state, "r1")
    host.supervisor.crash("flaskr-web-green", "ImportError: no module named flask\n", "FATAL")
    with pytest.raises(HealthCheckFailed):
        _deploy(host, app, state, "r2")
    saved = load_state(app)
    assert (saved.live, saved.slot) == ("r1", "blue")
    assert _statuses(app) == {"r1": "live", "r2": "failed"}
    assert saved.events[-1]["detail"].startswith("failed: release r2 failed its health check")


def test_a_failed_commit_records_the_release_failed(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2")
    _deploy(host, app, state, "r1")
    host.nginx.refuse = True
    with pytest.raises(DeployError, match=r"nginx did not take the new configuration"):
        _deploy(host, app, state, "r2")
    assert _statuses(app) == {"r1": "live", "r2": "failed"}
    assert load_state(app).events[-1]["detail"] == (
        "failed: nginx did not take the new configuration: bind() failed"
    )
    assert "flaskr-web-green" not in host.supervisor.programs


def test_a_failed_restart_of_the_live_release_leaves_it_live(host: FakeHost) -> None:
    app, state = _installed(host, "r1")
    _deploy(host, app, state, "r1")
    host.supervisor.crash("flaskr-web-green", "KeyError: 'DATABASE_URL'\n")
    with pytest.raises(HealthCheckFailed):
        lifecycle.restart(SPEC, _machine(host), Silent(), config={"DATABASE_URL": ""})
    assert _statuses(app) == {"r1": "live"}
    # the config that broke the app is not saved
    assert PurePosixPath(app.config_file) not in host.conn.files


def test_a_restart_saves_the_config_once_the_switch_succeeded(host: FakeHost) -> None:
    app, state = _installed(host, "r1")
    _deploy(host, app, state, "r1")
    outcome = lifecycle.restart(SPEC, _machine(host), Silent(), config={"A": "1"})
    assert outcome is not None and (outcome.release, outcome.slot) == ("r1", "green")
    assert json.loads(host.conn.text(app.config_file)) == {"A": "1"}
    assert "A=1" in host.conn.text(app.env_file("green"))
    config_write = f"put {app.config_file}"
    assert host.journal.index("nginx wait_handed_over") < host.journal.index(config_write)


def test_a_restart_of_an_app_never_deployed_only_saves_the_config(host: FakeHost) -> None:
    app, _ = _installed(host)
    assert lifecycle.restart(SPEC, _machine(host), Silent(), config={"A": "1"}) is None
    assert json.loads(host.conn.text(app.config_file)) == {"A": "1"}
    assert host.supervisor.programs == {}


def test_pruning_keeps_the_live_release_and_the_newest_others(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2", "r3", "r4")
    for release_id in ("r1", "r3", "r4", "r2"):  # r2 went live last, a rollback say
        _deploy(host, app, state, release_id)
    lifecycle.prune_releases(app, state, keep=2)
    assert _statuses(app) == {"r1": "pruned", "r3": "pruned", "r4": "previous", "r2": "live"}
    assert sorted(p.name for p in app.releases.iterdir()) == ["r2", "r4"]


def test_rollback_goes_to_the_release_live_before(host: FakeHost) -> None:
    app, state = _installed(host, "r1", "r2", "r3")
    for release_id in ("r2", "r1", "r3"):
        _deploy(host, app, state, release_id)
    assert lifecycle.rollback_target(app, state, None) == "r1"
    assert lifecycle.rollback_target(app, state, "r2") == "r2"
    outcome = lifecycle.rollback(SPEC, _machine(host), Silent(), None)
    assert outcome.release == "r1" and load_state(app).live == "r1"
    assert load_state(app).events[-1]["action"] == "rollback"


@pytest.mark.parametrize(
    ("to", "error"),
    [
        ("r", r"--to 'r' matches several releases; releases on disk: r1, r2"),
        ("x9", r"--to 'x9' is not a release on disk"),
        ("r2", r"release r2 is already live"),
        (None, r"no earlier release on disk to roll back to"),
    ],
)
def test_rollback_targets_that_are_refused(host: FakeHost, to: str | None, error: str) -> None:
    app, state = _installed(host, "r1", "r2")
    _deploy(host, app, state, "r2")  # r1 was never live: nothing to go back to
    with pytest.raises(UsageError, match=error):
        lifecycle.rollback_target(app, state, to)


def test_stop_and_start_the_live_slots_programs(host: FakeHost) -> None:
    app, state = _installed(host, "r1")
    _deploy(host, app, state, "r1")
    machine = _machine(host)
    assert lifecycle.stop(SPEC, machine) == ["flaskr-web-blue"]
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"
    assert lifecycle.start(SPEC, machine) == ["flaskr-web-blue"]
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"


def test_start_says_so_when_the_release_does_not_come_up(host: FakeHost) -> None:
    app, state = _installed(host, "r1")
    _deploy(host, app, state, "r1")
    lifecycle.stop(SPEC, _machine(host))
    host.nginx.broken = True
    short = make_spec(healthcheck={"path": "/health", "timeout": 0.05})
    (app.release("r1") / "spec.json").write_text(short.model_dump_json())
    host.conn.files[PurePosixPath(app.app_log("web", "blue"))] = b"booting\nOperationalError\n"
    with pytest.raises(HealthCheckFailed, match=r"started but is not healthy") as failed:
        lifecycle.start(SPEC, _machine(host))
    assert failed.value.message.endswith("  | booting\n  | OperationalError")


def test_start_refuses_an_app_never_deployed(host: FakeHost) -> None:
    _installed(host)
    with pytest.raises(UsageError, match=r"has never been deployed here"):
        lifecycle.start(SPEC, _machine(host))
    assert lifecycle.stop(SPEC, _machine(host)) == []


def test_destroy_removes_the_programs_site_and_releases(host: FakeHost) -> None:
    app, state = _installed(host, "r1")
    _deploy(host, app, state, "r1")
    save_state(app, load_state(app))
    app.site_file.parent.mkdir(parents=True)
    app.site_file.write_text("server {}")  # destroy asks the disk whether there was a site
    lifecycle.destroy(SPEC, _machine(host), purge=True)
    removed = {PurePosixPath(app.program_file(s)) for s in ("blue", "green")}
    assert removed.isdisjoint(host.conn.files) and host.supervisor.programs == {}
    assert PurePosixPath(app.site_file) not in host.conn.files
    assert host.nginx.reloads[-1].waits == ["drained"]
    assert not app.root.exists() and host.runtime_stopped


def test_required_secrets_must_be_set_and_generated_ones_are_made(host: FakeHost) -> None:
    app, _ = _installed(host)
    spec = make_spec(secrets={"API_KEY": "required", "SECRET_KEY": "generate"})
    with pytest.raises(DeployError, match=r"needs the secret\(s\) API_KEY"):
        lifecycle.ensure_secrets(_machine(host), spec, app, Silent())
    app.shared.mkdir(parents=True)
    app.config_file.write_text('{"API_KEY": "k"}')
    progress = Silent()
    lifecycle.ensure_secrets(_machine(host), spec, app, progress)
    saved = json.loads(host.conn.text(app.config_file))
    assert saved["API_KEY"] == "k" and len(saved["SECRET_KEY"]) >= 32
    assert host.conn.modes[PurePosixPath(app.config_file)] == 0o600
    assert progress.notes == ["generated secret(s) SECRET_KEY (see 'shipyard config list')"]
