"""[processes] entries in both forms, their counts as supervisor programs, and a worker that
does not stay up failing the deploy before traffic moves."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import DeployError, ShipyardError, SpecError, UsageError
from shipyard.host import programs, render
from shipyard.host.layout import HostLayout
from shipyard.host.scale import check_changes, load_scale, save_scale, scaled
from shipyard.host.switch import Switch
from shipyard.spec.model import ProcessSpec, parse_spec
from shipyard.targets.base import HostStatus, Process

CRASH = "Traceback (most recent call last):\n  File 'worker.py'\nKeyError: 'REDIS_URL'\n"


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def test_a_command_string_and_a_table_are_the_same_process() -> None:
    spec = make_spec(
        processes={"worker": "celery -A app worker", "clock": {"command": "python c.py"}}
    )
    assert spec.processes["worker"] == ProcessSpec(command="celery -A app worker")
    assert spec.processes["clock"].count == 1
    counted = make_spec(processes={"worker": {"command": "rq worker", "count": 3}})
    assert counted.processes["worker"].count == 3
    # a spec stored by a release before tables existed still loads
    assert type(spec).model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"command": "rq worker", "count": -1}, r"processes\.worker\.count"),
        ({"command": "rq worker", "workers": 2}, r"processes\.worker\.workers"),
        ({"count": 2}, r"processes\.worker\.command"),
    ],
)
def test_bad_process_tables_are_refused_by_key(entry: object, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_spec({"name": "a", "entry": "a:app", "processes": {"worker": entry}}, Path("s.toml"))


def test_a_count_runs_that_many_programs_each_with_its_log(host: FakeHost) -> None:
    spec = make_spec(
        processes={
            "worker": {"command": "rq worker", "count": 3},
            "off": {"command": "x", "count": 0},
        }
    )
    app = host.layout.app("flaskr")
    text = render.program_conf(spec, app, "abc", "blue", host.layout.launcher)
    names = [
        "flaskr-web-blue",
        "flaskr-worker-blue",
        "flaskr-worker-1-blue",
        "flaskr-worker-2-blue",
    ]
    assert [line[9:-1] for line in text.splitlines() if line.startswith("[program:")] == names
    assert programs.slot_programs(app, spec, "blue") == names
    assert f"stdout_logfile = {app.app_log('worker-2', 'blue')}\n" in text
    # workers must stay up past their startsecs; the web server's readiness is its health check
    assert text.count("startsecs = 2\n") == 3 and text.count("startsecs = 1\n") == 1


def test_scaling_keeps_the_instances_that_stay() -> None:
    assert programs.instance_names("worker", 1) == ["worker"]
    assert programs.instance_names("worker", 3)[:1] == ["worker"]
    assert programs.instance_names("worker", 0) == []


def _switch(host: FakeHost, release_id: str, live: tuple[str, str] | None) -> Switch:
    return Switch(
        host.conn,
        host.supervisor,
        host.layout.app("flaskr"),
        release_id,
        config={},
        listen=LISTEN,
        live=live,
        run_release_command=False,
        servers=host.servers,
        nginx_check_timeout=0.05,
    )


def test_a_worker_that_crash_loops_fails_the_deploy_with_its_output_and_nothing_switched(
    host: FakeHost,
) -> None:
    app = host.layout.app("flaskr")
    spec = make_spec(processes={"worker": {"command": "python worker.py", "count": 2}})
    put_release(app, "r1", spec)
    put_release(app, "r2", spec)
    _switch(host, "r1", None).run()
    site = host.conn.files[PurePosixPath(app.site_file)]
    host.supervisor.crash("flaskr-worker-1-green", CRASH, state="BACKOFF")
    with pytest.raises(DeployError, match=r"process worker-1 did not stay up \(BACKOFF") as failed:
        _switch(host, "r2", ("r1", "blue")).run()
    assert "  | KeyError: 'REDIS_URL'" in failed.value.message
    assert failed.value.hint is not None and "Nothing was switched" in failed.value.hint
    assert host.conn.files[PurePosixPath(app.site_file)] == site
    assert host.nginx.release_served() == "r1"
    assert not any(name.endswith("-green") for name in host.supervisor.programs)
    assert host.supervisor.state("flaskr-worker-1-blue") == "RUNNING"


def test_status_is_not_ok_while_a_process_is_down() -> None:
    up = Process("flaskr-web-blue", "RUNNING", 10, "pid 10, uptime 0:01:00")
    down = Process("flaskr-worker-blue", "FATAL", 0, "Exited too quickly")
    starting = Process("flaskr-worker-1-blue", "STARTING", 11, "")  # not up for startsecs yet
    assert HostStatus("h", healthy=True, processes=[up, starting]).ok
    broken = HostStatus("h", healthy=True, processes=[up, down])
    assert not broken.ok and broken.down == [down]


def test_the_scale_is_kept_beside_the_config_and_applied_over_the_spec(host: FakeHost) -> None:
    app = host.layout.app("flaskr")
    spec = make_spec(processes={"worker": "rq worker", "clock": "python clock.py"})
    assert load_scale(app) == {}
    save_scale(app, {"worker": 3, "web": 2})
    scale = load_scale(app)
    over = scaled(spec, {**scale, "gone": 4})  # a process the release no longer has: ignored
    assert (over.server.workers, over.processes["worker"].count) == (2, 3)
    assert over.processes["clock"].count == 1 and spec.processes["worker"].count == 1
    argv = render.server_argv(over, app, "abc", "blue", scale["web"])
    assert argv[argv.index("--workers") + 1] == "2"
    assert "--workers" not in render.server_argv(spec, app, "abc", "blue")
    app.scale_file.write_text('{"worker": "three"}')
    with pytest.raises(ShipyardError, match=r"scale.json is corrupt"):
        load_scale(app)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"celery": 2}, r"no such process \(known: web, worker\)"),
        ({"web": 0}, r"cannot scale web to 0: from 1 to 64"),
        ({"worker": 65}, r"cannot scale worker to 65"),
    ],
)
def test_scale_names_and_counts_are_checked(changes: dict[str, int], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        check_changes(make_spec(processes={"worker": "rq worker"}), changes)
    check_changes(make_spec(processes={"worker": "rq worker"}), {"worker": 0, "web": 4})
