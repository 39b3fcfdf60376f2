"""The blue/green switch against a fake host: what it writes, starts, reloads and undoes."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from fakes import FakeHost, Removed
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import CommandFailed, DeployError, HealthCheckFailed
from shipyard.host.health import Probe
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.steps import Command, Result
from shipyard.host.switch import Outcome, Switch
from shipyard.spec.model import Spec

APP = "flaskr"
CRASH = "Traceback (most recent call last):\n  File 'app.py'\nImportError: no module named flask\n"


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _app(host: FakeHost, spec: Spec | None = None, *releases: str) -> AppLayout:
    app = host.layout.app(APP)
    for release_id in releases or ("r1", "r2"):
        put_release(app, release_id, spec or make_spec())
    return app


def _switch(
    host: FakeHost,
    app: AppLayout,
    release_id: str,
    live: tuple[str, str] | None = None,
    *,
    release_command: bool = False,
) -> Switch:
    return Switch(
        host.conn,
        host.supervisor,
        app,
        release_id,
        config={"SECRET_KEY": "s3"},
        listen=LISTEN,
        live=live,
        run_release_command=release_command,
        servers=host.servers,
        nginx_check_timeout=0.05,
    )


def _live_on_blue(host: FakeHost, app: AppLayout) -> None:
    """r1 serving from the blue slot, as after a first deploy."""
    assert _switch(host, app, "r1").run() == Outcome("r1", "blue", None)
    host.journal.clear()
    host.conn.recorded.clear()


def _site(host: FakeHost, app: AppLayout) -> str:
    return host.conn.text(app.site_file)


def test_stage_writes_a_private_env_file_and_starts_the_idle_slot_healthy(
    host: FakeHost,
) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    assert switch.slot == "green"
    switch.stage()
    env = PurePosixPath(app.env_file("green"))
    assert host.conn.modes[env] == 0o600
    assert "SHIPYARD_RELEASE=r2" in host.conn.text(app.env_file("green"))
    assert "SECRET_KEY=s3" in host.conn.text(app.env_file("green"))
    program = PurePosixPath(app.program_file("green"))
    assert [u.dest for u in host.conn.uploads] == [env, program]
    assert Removed(PurePosixPath(app.socket("green"))) in host.conn.recorded
    assert host.supervisor.state("flaskr-web-green") == "RUNNING"
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"  # the live slot is untouched
    assert "release r1" in _site(host, app) and host.nginx.release_served() == "r1"
    # a program left stopping in the idle slot is waited for before the new one starts
    assert host.journal.index("supervisor wait_stopped flaskr-web-green") < host.journal.index(
        f"put {program}"
    )


def test_gunicorn_starts_held_while_the_release_command_runs(host: FakeHost) -> None:
    app = _app(host, make_spec(release="flask --app flaskr init-db"))
    launcher = str(app.host.launcher)
    host.conn.answer((launcher,))
    _switch(host, app, "r1", release_command=True).stage()
    prefix = (launcher, str(app.env_file("blue")), str(app.release("r1")))
    command = f"run {shlex.join((*prefix, 'flask', '--app', 'flaskr', 'init-db'))}"
    assert host.conn.commands == [(*prefix, "flask", "--app", "flaskr", "init-db")]
    hold = app.hold_file("blue")
    steps = [f"put {hold}", "supervisor start flaskr-web-blue", command, f"remove {hold}"]
    done = [line for line in host.journal if line in steps]
    # the hold first and last; between them the command and the start go on at once
    assert done[0] == steps[0] and done[-1] == steps[-1] and sorted(done) == sorted(steps)
    assert host.conn.modes[PurePosixPath(hold)] == 0o644  # read by the app's user
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"


def test_the_release_command_does_not_wait_for_the_slot_to_be_free(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The release kept warm on the slot may take a while to stop: the command runs
    meanwhile (the slot's wait ends only once the command has run, or fails the test)."""
    app = _app(host, make_spec(release="flask --app flaskr init-db"))
    host.conn.answer((str(app.host.launcher),))
    ran = threading.Event()
    run = host.conn.run

    def command(step: Command) -> Result:
        ran.set()
        return run(step)

    def still_stopping(name: str, timeout: float) -> None:
        assert ran.wait(10), "the release command waited for the slot"

    monkeypatch.setattr(host.conn, "run", command)
    monkeypatch.setattr(host.supervisor, "wait_stopped", still_stopping)
    _switch(host, app, "r1", release_command=True).stage()
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"


@pytest.mark.parametrize(
    "fields",
    [
        {"server": {"type": "uwsgi"}},  # runs the app as it starts: nothing to hold it
        {"processes": {"worker": "python worker.py"}},  # a worker would start with it
    ],
)
def test_otherwise_the_release_command_runs_before_the_slot_starts(
    host: FakeHost, fields: dict[str, Any]
) -> None:
    app = _app(host, make_spec(release="flask --app flaskr init-db", **fields))
    host.conn.answer((str(app.host.launcher),))
    _switch(host, app, "r1", release_command=True).stage()
    [command] = [line for line in host.journal if line.startswith("run ")]
    assert host.journal.index(command) < host.journal.index("supervisor update")
    assert not any(line.startswith(f"put {app.hold_file('blue')}") for line in host.journal)
    # a hold left by a command that was killed holding the slot is removed
    assert f"remove {app.hold_file('blue')}" in host.journal


def test_a_failed_release_command_stops_the_held_server_before_its_hold_goes(
    host: FakeHost,
) -> None:
    app = _app(host, make_spec(release="flask --app flaskr init-db"))
    _live_on_blue(host, app)
    host.conn.answer((str(app.host.launcher),), exit_code=2, stdout="no such table")
    with pytest.raises(CommandFailed, match="the release command failed"):
        _switch(host, app, "r2", ("r1", "blue"), release_command=True).stage()
    assert "flaskr-web-green" not in host.supervisor.programs
    removed_program = f"remove {app.program_file('green')}"
    assert host.journal.count(removed_program) == 1  # stopped once, not again by stage()
    assert host.journal.index(removed_program) < host.journal.index(
        f"remove {app.hold_file('green')}"
    )
    assert PurePosixPath(app.hold_file("green")) not in host.conn.files


def test_a_source_tree_s_release_runs_in_its_tree_with_it_on_the_path(host: FakeHost) -> None:
    app = host.layout.app(APP)
    spec = make_spec(release="python manage.py migrate", processes={"worker": "python worker.py"})
    put_release(app, "r1", spec, tree=True)
    launcher = str(app.host.launcher)
    host.conn.answer((launcher,))
    _switch(host, app, "r1", release_command=True).stage()
    tree = str(app.release("r1") / "src")
    prefix = (launcher, str(app.env_file("blue")), tree)
    assert host.conn.commands == [(*prefix, "python", "manage.py", "migrate")]
    assert f"PYTHONPATH={tree}\n" in host.conn.text(app.env_file("blue"))
    program = host.conn.text(app.program_file("blue"))
    assert f"{' '.join(prefix)} python worker.py\n" in program
    assert program.count(f"directory = {tree}\n") == 2


def test_a_failed_release_command_switches_nothing(host: FakeHost) -> None:
    app = _app(host, make_spec(release="flask --app flaskr init-db"))
    _live_on_blue(host, app)
    host.conn.answer((str(app.host.launcher),), exit_code=2, stdout="no such table: users")
    before = _site(host, app)
    with pytest.raises(CommandFailed, match=r"the release command failed") as failed:
        _switch(host, app, "r2", ("r1", "blue"), release_command=True).stage()
    assert "no such table: users" in failed.value.message
    assert failed.value.hint is not None and "Nothing was switched" in failed.value.hint
    assert PurePosixPath(app.program_file("green")) not in host.conn.files
    assert "flaskr-web-green" not in host.supervisor.programs
    assert _site(host, app) == before and host.nginx.reloads[-1:] == host.nginx.reloads[:1]


def test_commit_points_nginx_at_the_new_slot_then_retires_the_old_once_drained(
    host: FakeHost,
) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    assert switch.commit() == Outcome("r2", "green", "r1")
    assert "release r2" in _site(host, app) and str(app.socket("green")) in _site(host, app)
    assert host.nginx.release_served() == "r2"
    assert host.conn.symlinks[PurePosixPath(app.current)] == "releases/r2"
    assert host.nginx.reloads[-1].waits == ["handed_over", "drained"]
    journal = host.journal
    site = f"put {app.site_file}"
    assert journal.index(site) < journal.index("nginx reload (drain=False)")
    assert journal.index("nginx wait_handed_over") < journal.index(
        f"link {app.current} -> releases/r2"
    )
    # the old slot is stopped only once nginx's old workers are gone
    assert journal.index("nginx wait_drained") < journal.index("supervisor retire flaskr-web-blue")
    assert PurePosixPath(app.program_file("blue")) not in host.conn.files
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"
    assert host.supervisor.state("flaskr-web-green") == "RUNNING"
    assert host.supervisor.closed == 1  # its own connection to supervisord if it is forked


def test_commit_can_leave_the_old_slot_to_retire_later(host: FakeHost) -> None:
    app = _app(host, make_spec(processes={"worker": "celery worker"}))
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    switch.commit(retire=False)
    assert switch.retiring and host.supervisor.state("flaskr-worker-blue") == "RUNNING"
    switch.retire_old()
    assert not switch.retiring
    assert [line for line in host.journal if line.startswith("supervisor retire")] == [
        "supervisor retire flaskr-web-blue",
        "supervisor retire flaskr-worker-blue",
    ]
    switch.retire_old()  # nothing left: a second call does nothing
    assert host.supervisor.closed == 1


def test_an_ordinary_switch_does_not_look_for_open_connections(host: FakeHost) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    _switch(host, app, "r2", ("r1", "blue")).run()
    assert not [line for line in host.journal if line.startswith("connections on")]
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"


def test_websockets_open_on_the_old_slot_are_closed_by_stopping_it_after_their_drain(
    host: FakeHost,
) -> None:
    app = _app(host, make_spec(server={"websocket_drain": 0}))
    _live_on_blue(host, app)
    host.nginx.linger = True  # nginx's old workers keep the WebSockets they carry
    host.connections[app.socket("blue")] = 2
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    switch.commit(retire=False)
    assert switch.wait_drained_old() is True
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"
    switch.retire_old()  # its drain is over: not waited for again
    journal = host.journal
    looks = [line for line in journal if line.startswith("connections on")]
    assert looks == [f"connections on {app.socket('blue')}"]
    assert journal.index(looks[0]) < journal.index("supervisor retire flaskr-web-blue")
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"
    assert host.nginx.reloads[-1].waits == ["handed_over"]


def test_a_failed_check_through_nginx_switches_back_to_the_old_slot(host: FakeHost) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    host.nginx.broken = True
    with pytest.raises(DeployError, match=r"answered on its socket but not through nginx") as err:
        switch.commit()
    assert err.value.hint is not None and err.value.hint.startswith("Switched back")
    assert "release r1" in _site(host, app) and str(app.socket("blue")) in _site(host, app)
    assert host.nginx.release_served() == "r1"
    assert host.nginx.reloads[-1].waits == ["drained"]  # the new slot's requests finish first
    assert "flaskr-web-green" not in host.supervisor.programs
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"
    assert host.conn.symlinks[PurePosixPath(app.current)] == "releases/r1"


def test_an_answer_from_the_old_release_through_nginx_is_not_a_pass(host: FakeHost) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    host.nginx.stale = "r1"  # another server on the port answers, say
    with pytest.raises(DeployError, match=r"not through nginx at http://127.0.0.1:8080/health: "):
        switch.commit()
    assert host.nginx.probes[-1].release == "r1"
    assert host.nginx.release_served() == "r1"


def test_a_rejected_nginx_config_restores_the_site_and_stops_the_new_slot(
    host: FakeHost,
) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    before = _site(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    host.nginx.reject = True
    with pytest.raises(CommandFailed, match=r"nginx rejected the configuration"):
        switch.commit()
    assert _site(host, app) == before
    assert "flaskr-web-green" not in host.supervisor.programs
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"


def test_a_first_deploy_has_no_old_slot_and_its_failure_removes_the_site(
    host: FakeHost,
) -> None:
    app = _app(host)
    switch = _switch(host, app, "r1")
    assert switch.slot == "blue"
    switch.stage()
    host.nginx.broken = True
    with pytest.raises(DeployError, match=r"not through nginx"):
        switch.commit()
    assert PurePosixPath(app.site_file) not in host.conn.files
    assert host.nginx.serving == {} and host.nginx.reloads[-1].waits == ["drained"]
    assert host.supervisor.programs == {}


def test_a_first_deploy_retires_nothing(host: FakeHost) -> None:
    app = _app(host)
    switch = _switch(host, app, "r1")
    assert switch.run() == Outcome("r1", "blue", None)
    assert not switch.retiring and not [
        line for line in host.journal if line.startswith("supervisor retire")
    ]
    assert host.nginx.release_served() == "r1"


def test_abort_stops_a_staged_slot(host: FakeHost) -> None:
    app = _app(host)
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    switch.abort()
    assert Removed(PurePosixPath(app.program_file("green"))) in host.conn.recorded
    assert "flaskr-web-green" not in host.supervisor.programs
    assert host.nginx.release_served() == "r1"


def test_a_server_that_crashes_is_given_up_on_early_with_its_output(host: FakeHost) -> None:
    app = _app(host, make_spec(healthcheck={"path": "/health", "timeout": 60}))
    _live_on_blue(host, app)
    host.supervisor.crash("flaskr-web-green", CRASH)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    with pytest.raises(HealthCheckFailed, match=r"the app server exited \(BACKOFF") as failed:
        switch.stage()
    message = failed.value.message
    assert "release r2 failed its health check (GET /health" in message
    assert "  | ImportError: no module named flask" in message
    assert failed.value.hint is not None and str(app.app_log("web", "green")) in failed.value.hint
    assert "flaskr-web-green" not in host.supervisor.programs  # aborted
    assert host.nginx.release_served() == "r1"


def test_a_server_that_never_answers_fails_at_the_deadline(host: FakeHost) -> None:
    app = _app(host, make_spec(healthcheck={"path": "/health", "timeout": 0.1}))
    host.supervisor.hang("flaskr-web-blue", "[INFO] Booting worker with pid: 1001\n")
    with pytest.raises(
        HealthCheckFailed, match=r"no healthy answer within 0.1 s; .*not bound"
    ) as failed:
        _switch(host, app, "r1").stage()
    assert host.supervisor.programs == {}
    assert failed.value.message.endswith("  | [INFO] Booting worker with pid: 1001")


def test_by_default_a_404_from_the_new_release_passes_on_its_socket_and_through_nginx(
    host: FakeHost,
) -> None:
    """An app with no `/` route (an API, a Django project) answers 404: it loaded and routes."""
    app = _app(host, make_spec(healthcheck={"timeout": 0.2}))
    _live_on_blue(host, app)
    host.supervisor.answers["flaskr-web-green"] = 404
    assert _switch(host, app, "r2", ("r1", "blue")).run() == Outcome("r2", "green", "r1")
    assert host.nginx.probes[-1] == Probe(True, "HTTP 404", "r2")
    assert host.nginx.release_served() == "r2"


def test_by_default_a_server_error_fails_the_check_and_switches_nothing(host: FakeHost) -> None:
    app = _app(host, make_spec(healthcheck={"timeout": 0.1}))
    _live_on_blue(host, app)
    host.supervisor.answers["flaskr-web-green"] = 500
    with pytest.raises(HealthCheckFailed) as failed:
        _switch(host, app, "r2", ("r1", "blue")).stage()
    assert failed.value.message.startswith(
        "release r2 failed its health check (GET / on "
        f"{app.socket('green')}): no healthy answer within 0.1 s; "
        "last: HTTP 500 (healthy is below 500)."
    )
    assert "flaskr-web-green" not in host.supervisor.programs
    assert host.nginx.release_served() == "r1"


def test_an_explicit_path_keeps_the_strict_statuses(host: FakeHost) -> None:
    app = _app(host, make_spec(healthcheck={"path": "/", "timeout": 0.1}))
    host.supervisor.answers["flaskr-web-blue"] = 404
    with pytest.raises(HealthCheckFailed, match=r"last: HTTP 404 \(healthy is \[200, 204, 301"):
        _switch(host, app, "r1").stage()


def test_by_default_a_server_error_through_nginx_switches_back(host: FakeHost) -> None:
    app = _app(host, make_spec(healthcheck={"timeout": 0.2}))
    _live_on_blue(host, app)
    switch = _switch(host, app, "r2", ("r1", "blue"))
    switch.stage()
    host.supervisor.answers["flaskr-web-green"] = 502  # broken once nginx sends it requests
    with pytest.raises(DeployError, match=r"not through nginx at .*: HTTP 502 \(healthy is below"):
        switch.commit()
    assert host.nginx.release_served() == "r1"


def test_an_app_without_domains_cannot_use_the_system_nginx(tmp_path: Path) -> None:
    host = FakeHost(HostLayout(tmp_path, system_nginx=True))
    app = _app(host)
    with pytest.raises(DeployError, match=r"has no `domains`"):
        _switch(host, app, "r1")


def test_a_release_command_that_cannot_import_the_app_says_it_is_the_app(host: FakeHost) -> None:
    app = _app(host, make_spec(release="flask --app flaskr db upgrade"))
    _live_on_blue(host, app)
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/r/flaskr/__init__.py", line 3, in <module>\n'
        "    import reportlab\n"
        "ModuleNotFoundError: No module named 'reportlab'\n"
    )
    host.conn.answer((str(app.host.launcher),), exit_code=1, stdout=traceback)
    with pytest.raises(CommandFailed, match=r"could not load the app") as failed:
        _switch(host, app, "r2", ("r1", "blue"), release_command=True).stage()
    assert failed.value.hint is not None
    assert "ModuleNotFoundError: No module named 'reportlab'" in failed.value.hint
    assert "not the command's" in failed.value.hint and "Fix the command" not in failed.value.hint


@pytest.mark.parametrize(
    ("state", "reused"), [("RUNNING", True), ("STARTING", True), ("BACKOFF", False)]
)
def test_a_release_kept_warm_is_reused_while_it_is_up(
    host: FakeHost, state: str, reused: bool
) -> None:
    """A rollback inside the window reuses the release still running on the idle slot, also
    within its startsecs (STARTING: it served a moment ago); one that is down starts anew."""
    app = _app(host)
    _live_on_blue(host, app)
    assert _switch(host, app, "r2", ("r1", "blue")).run() == Outcome("r2", "green", "r1")
    host.supervisor.programs["flaskr-web-blue"].state = state  # kept warm, not retired
    pid = host.supervisor.programs["flaskr-web-blue"].pid
    host.journal.clear()
    back = Switch(
        host.conn,
        host.supervisor,
        app,
        "r1",
        config={"SECRET_KEY": "s3"},
        listen=LISTEN,
        live=("r2", "green"),
        run_release_command=False,
        servers=host.servers,
        nginx_check_timeout=0.05,
        warm=True,
    )
    assert back.slot == "blue"
    back.stage()
    assert back.warm_reused is reused
    started = "supervisor start flaskr-web-blue" in host.journal
    assert started is not reused
    if reused:
        assert host.supervisor.programs["flaskr-web-blue"].pid == pid
