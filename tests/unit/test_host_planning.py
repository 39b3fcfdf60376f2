"""host_plan on a fake host: what a deploy would do, read without changing anything, with the
diff of every file it would write and the secrets in them masked."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pytest
from agentfakes import GuardedConnection
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import UsageError
from shipyard.host import lifecycle
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.planning import host_plan
from shipyard.host.setup_command import SetupRecord, save_setup
from shipyard.host.state import AppState, ReleaseRecord, load_state
from shipyard.host.steps import Connection
from shipyard.plan import FileChange, Plan, PlannedStage
from shipyard.spec.model import RESERVED_ENV, Spec

SPEC = make_spec()


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _machine(host: FakeHost, conn: Connection | None = None) -> lifecycle.Machine:
    return lifecycle.Machine(
        conn or host.conn, host.layout, host.layout.wheels, LISTEN, servers=host.servers
    )


def _app(host: FakeHost) -> AppLayout:
    return host.layout.app(SPEC.name)


def _set_config(app: AppLayout, config: dict[str, str]) -> None:
    app.shared.mkdir(parents=True, exist_ok=True)
    app.config_file.write_text(json.dumps(config))


def _deploy(host: FakeHost, *releases: str, spec: Spec = SPEC) -> None:
    """Each release installed, then switched to, as a deploy does (the config from disk)."""
    app = _app(host)
    state = load_state(app)
    for release_id in releases:
        put_release(app, release_id, spec)
        state.upsert(ReleaseRecord(id=release_id, created="2026-01-01T00:00:00Z"))
        switch = lifecycle.stage(
            _machine(host), host.supervisor, app, release_id, state, "deploy", release_cmd=False
        )
        lifecycle.commit(app, switch, state, "deploy")


def _stage(plan: Plan, name: str) -> PlannedStage:
    return next(stage for stage in plan.stages if stage.name == name)


def _files(plan: Plan) -> dict[str, FileChange]:
    return {change.path: change for change in _stage(plan, "configure").files}


def _removed_and_added(diff: str) -> tuple[list[str], list[str]]:
    """The diff's lines but shipyard's own variables, which name the release."""
    own = tuple(f"{sign}{key}=" for key in RESERVED_ENV for sign in "+-")
    lines = [line for line in diff.splitlines() if not line.startswith(("---", "+++", "@@", *own))]
    return (
        [line[1:] for line in lines if line.startswith("-")],
        [line[1:] for line in lines if line.startswith("+")],
    )


def test_a_source_tree_s_plan_runs_it_in_its_tree(host: FakeHost) -> None:
    app = _app(host)
    plan = host_plan(_machine(host), SPEC, "r1", None, tree=True)
    files = _files(plan)
    env = files[str(app.env_file("blue"))].diff.splitlines()
    assert f"+PYTHONPATH={app.release('r1') / 'src'}" in env
    _, program = _removed_and_added(files[str(app.program_file("blue"))].diff)
    assert f"directory = {app.release('r1') / 'src'}" in program


def test_a_first_deploy_plan_installs_and_writes_every_file_new(host: FakeHost) -> None:
    app = _app(host)
    _set_config(app, {"SECRET_KEY": "hunter2"})
    plan = host_plan(_machine(host), SPEC, "r1", None)
    assert (plan.app, plan.host, plan.release) == ("flaskr", "local", "r1")
    assert [stage.name for stage in plan.stages] == ["install", "configure", "switch"]
    assert _stage(plan, "install").notes == [
        f"unpack into {app.release('r1')}, make its venv offline from the wheel store, "
        "link persistent data"
    ]
    files = _files(plan)
    written = [app.env_file("blue"), app.program_file("blue"), app.site_file]
    assert list(files) == [str(path) for path in written]
    for path, change in files.items():
        removed, added = _removed_and_added(change.diff)
        assert change.diff.startswith(f"--- {path} (now)\n+++ {path} (new)\n")
        assert removed == [] and added, path  # nothing there yet
    env = files[str(app.env_file("blue"))].diff.splitlines()
    assert "+SECRET_KEY='***'" in env and "+SHIPYARD_RELEASE=r1" in env
    assert "hunter2" not in plan.model_dump_json()
    assert _stage(plan, "switch").notes == [
        f"start flaskr-web-blue on {app.socket('blue')}",
        "health check GET /health on that socket (timeout 5 s)",
        "nginx -t, graceful reload, wait for the old workers",
        f"check http://{LISTEN}/health answers from r1",
        f"point {app.current} at releases/r1",
        "prune releases beyond the newest 5",
    ]
    # a plan reads: it writes, runs and creates nothing
    assert host.conn.recorded == [] and not app.state_file.exists()


def test_the_install_stage_lists_the_steps_given_or_notes_a_release_installed(
    host: FakeHost,
) -> None:
    steps = ["unpack the artifact", "make the venv"]
    install = _stage(host_plan(_machine(host), SPEC, "r1", steps), "install")
    assert (install.steps, install.notes) == (steps, [])
    put_release(_app(host), "r1", SPEC)
    install = _stage(host_plan(_machine(host), SPEC, "r1", steps), "install")
    assert (install.steps, install.notes) == ([], ["release r1 is already installed"])


def test_a_plan_on_a_deployed_host_diffs_the_idle_slot_and_stops_the_live_one(
    host: FakeHost,
) -> None:
    app = _app(host)
    _set_config(app, {"SECRET_KEY": "hunter2"})
    _deploy(host, "r1", "r2")  # r2 serves on green; blue is idle and holds r1's files
    spec = make_spec(release="flask db upgrade")
    earlier = [PlannedStage(name="build", notes=["artifact r1: already built, reused"])]
    plan = host_plan(_machine(host), spec, "r1", None, name="web1", earlier=earlier)
    assert plan.host == "web1"
    assert [stage.name for stage in plan.stages] == ["build", "install", "configure", "switch"]
    assert _stage(plan, "install").notes == ["release r1 is already installed"]
    files = _files(plan)
    # blue's env file went when r1 was retired: the change is from green's, serving r2,
    # with the same config (the secret masked both sides): only the release's own paths
    env_diff = files[str(app.env_file("blue"))].diff
    assert env_diff.startswith(f"--- {app.env_file('green')} (now)\n")
    assert _removed_and_added(env_diff) == ([], [])
    assert {"-SHIPYARD_RELEASE=r2", "+SHIPYARD_RELEASE=r1"} <= set(env_diff.splitlines())
    # blue's program file went when r1 was retired; the site moves from green/r2 to blue/r1
    _, program = _removed_and_added(files[str(app.program_file("blue"))].diff)
    assert "[program:flaskr-web-blue]" in program
    removed, added = _removed_and_added(files[str(app.site_file)].diff)
    assert any(str(app.socket("green")) in line for line in removed)
    assert any(str(app.socket("blue")) in line for line in added)
    notes = _stage(plan, "switch").notes
    assert notes[0] == "run the release command: flask db upgrade"
    assert "stop the old slot (green, release r2)" in notes
    assert "hunter2" not in plan.model_dump_json()


def test_a_changed_secret_shows_neither_value(host: FakeHost) -> None:
    app = _app(host)
    _set_config(app, {"SECRET_KEY": "old-secret"})
    _deploy(host, "r1", "r2")
    _set_config(app, {"SECRET_KEY": "new-secret", "API": "v2"})
    plan = host_plan(_machine(host), SPEC, "r1", None)
    removed, added = _removed_and_added(_files(plan)[str(app.env_file("blue"))].diff)
    assert (removed, added) == ([], ["API='***'"])  # a key added; the changed one looks alike
    assert "old-secret" not in plan.model_dump_json()
    assert "new-secret" not in plan.model_dump_json()


def test_a_file_this_user_cannot_read_is_said_so(host: FakeHost) -> None:
    app = _app(host)
    env_file = PurePosixPath(app.env_file("blue"))
    conn = GuardedConnection(host.journal, {env_file})
    plan = host_plan(_machine(host, conn), SPEC, "r1", None)
    removed, _ = _removed_and_added(_files(plan)[str(env_file)].diff)
    assert removed == ["(not readable here)"]


def test_an_empty_env_file_is_diffed_as_empty(host: FakeHost) -> None:
    app = _app(host)
    host.conn.files[PurePosixPath(app.env_file("blue"))] = b""
    plan = host_plan(_machine(host), SPEC, "r1", None)
    removed, added = _removed_and_added(_files(plan)[str(app.env_file("blue"))].diff)
    assert removed == [] and added[0].startswith("# Managed by shipyard")


def test_the_plan_follows_the_state_to_the_idle_slot(host: FakeHost) -> None:
    app = _app(host)
    app.root.mkdir(parents=True)
    app.state_file.write_text(AppState(live="r1", slot="blue").to_json())
    plan = host_plan(_machine(host), SPEC, "r2", None)
    assert list(_files(plan))[:2] == [str(app.env_file("green")), str(app.program_file("green"))]
    assert "stop the old slot (blue, release r1)" in _stage(plan, "switch").notes


def test_a_plan_refuses_a_base_too_deep_for_unix_sockets(tmp_path: Path) -> None:
    host = FakeHost(HostLayout(tmp_path / ("deep" * 25)))
    with pytest.raises(UsageError, match=r"is too deep: the socket path"):
        host_plan(_machine(host), SPEC, "r1", None)


def test_a_secret_that_spans_lines_is_masked_whole(host: FakeHost) -> None:
    """A PEM key as config: the env file quotes it over several lines, all of them secret."""
    app = _app(host)
    key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg=secret-body\n-----END PRIVATE KEY-----"
    _set_config(app, {"TLS_KEY": key, "A": "1"})
    _deploy(host, "r1", "r2")  # green, live, holds r2's env file with the key
    assert "secret-body" in host.conn.text(app.env_file("green"))
    plan = host_plan(_machine(host), SPEC, "r1", None)
    assert "secret-body" not in plan.model_dump_json()
    assert "PRIVATE KEY" not in plan.model_dump_json()
    # masked alike on both sides: no change but the release's own variables
    assert _removed_and_added(_files(plan)[str(app.env_file("blue"))].diff) == ([], [])


def test_a_secret_unset_since_the_live_env_was_written_stays_masked(
    host: FakeHost,
) -> None:
    """The live slot's env file still holds a secret the config no longer has."""
    app = _app(host)
    _set_config(app, {"API_TOKEN": "tok-123", "A": "1"})
    _deploy(host, "r1", "r2")
    _set_config(app, {"A": "1"})
    plan = host_plan(_machine(host), SPEC, "r1", None)
    assert "tok-123" not in plan.model_dump_json()
    removed, added = _removed_and_added(_files(plan)[str(app.env_file("blue"))].diff)
    assert (removed, added) == (["API_TOKEN='***'"], [])  # that it goes is still shown


def test_an_override_of_a_public_default_stays_masked_once_unset(host: FakeHost) -> None:
    """A config value overrode the spec's public default, then was unset: the idle slot's
    env file still holds the override, which may be a secret."""
    spec = make_spec(env={"GREETING": "hello"})
    app = _app(host)
    _set_config(app, {"GREETING": "private-override"})
    _deploy(host, "r1", "r2", spec=spec)
    _set_config(app, {})
    plan = host_plan(_machine(host), spec, "r1", None)
    assert "private-override" not in plan.model_dump_json()
    removed, added = _removed_and_added(_files(plan)[str(app.env_file("blue"))].diff)
    assert (removed, added) == (["GREETING='***'"], ["GREETING=hello"])


def test_the_plan_runs_the_setup_command_only_when_a_deploy_would(host: FakeHost) -> None:
    app = _app(host)
    spec = make_spec(setup="flask --app flaskr init-db", release="flask db upgrade")

    def switch_notes(release_cmd: bool = True, setup_on: str | None = None) -> list[str]:
        plan = host_plan(
            _machine(host), spec, "r2", None, release_cmd=release_cmd, setup_on=setup_on
        )
        return _stage(plan, "switch").notes[:2]

    first = "first deploy here: run the setup command once: flask --app flaskr init-db"
    assert switch_notes() == [first, "run the release command: flask db upgrade"]
    # a fleet host other than the release host: neither command, the setup recorded
    assert switch_notes(release_cmd=False, setup_on="web1")[0] == (
        "setup is done for this target on web1: not run here"
    )
    assert "run the release command" not in " ".join(switch_notes(release_cmd=False))
    _deploy(host, "r1")  # live now, deployed before it had a setup: it will not run
    assert switch_notes()[0].startswith("setup treated as done, not run")
    assert not app.setup_file.exists()  # planning records nothing
    save_setup(app, SetupRecord("2026-01-01T00:00:00Z", "r1", spec.setup))
    assert switch_notes()[0] == (
        "setup is done here already (it ran on 2026-01-01T00:00:00Z (release r1)): not run again"
    )
