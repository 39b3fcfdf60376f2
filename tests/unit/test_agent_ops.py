"""The agent's operations on a fake host: what each request does, in what order, and the
typed error each refusal gives (the protocol's shape is tested in test_agent_protocol.py)."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import pytest
from agentfakes import (
    APP_WHEEL,
    artifact_tree,
    entries,
    fake_session,
    handle_with_files,
    put_artifact,
)
from fakes import FakeHost
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import CommandFailed, DeployError, LockHeld, UsageError
from shipyard.host import agent, resident, wire
from shipyard.host import protocol as p
from shipyard.host.artifact import MANIFEST, SPEC
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.release import load_config
from shipyard.host.state import load_state, save_state
from shipyard.spec.model import Spec

APP = "flaskr"
SPEC_ = make_spec()
DEP = "dep-1.0-py3-none-any.whl"


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path / "base"))


def _app(host: FakeHost) -> AppLayout:
    return host.layout.app(APP)


def _installed(session: agent.Session, host: FakeHost, *releases: str, spec: Spec = SPEC_) -> None:
    """Releases received and on disk, recorded by an install (the install steps themselves
    build venvs: a release on disk is what they leave, so the install finds it done)."""
    for release_id in releases:
        put_artifact(host.layout, release_id, spec)
        put_release(_app(host), release_id, spec)
        assert session.handle(p.Install(app=APP, release=release_id)) == p.Done()


def _deploy(session: agent.Session, release_id: str) -> p.CommitReply:
    session.handle(p.Stage(app=APP, release=release_id))
    reply = session.handle(p.Commit(app=APP))
    assert isinstance(reply, p.CommitReply)
    return reply


def _in_order(journal: list[str], *lines: str) -> bool:
    """`lines` all happened, in this order (other lines may come between them)."""
    positions = [journal.index(line) for line in lines]
    return positions == sorted(positions)


# --- the release state machine ------------------------------------------------------------


def test_a_deploy_stages_the_idle_slot_then_commits_and_retires_the_old_one(
    host: FakeHost,
) -> None:
    session = fake_session(host)
    _installed(session, host, "r1", "r2")
    assert session.handle(p.Stage(app=APP, release="r1")) == p.StageReply(
        slot="blue", previous=None
    )
    assert session.handle(p.Commit(app=APP)) == p.CommitReply(
        release="r1", slot="blue", previous=None
    )
    assert session.handle(p.Stage(app=APP, release="r2")) == p.StageReply(
        slot="green", previous="r1"
    )
    del host.journal[:]
    assert session.handle(p.Commit(app=APP)) == p.CommitReply(
        release="r2", slot="green", previous="r1"
    )
    app = _app(host)
    # traffic moves first; the old slot stops only once nginx's old workers are done
    assert _in_order(
        host.journal,
        f"put {app.site_file}",
        "nginx reload (drain=False)",
        "nginx wait_handed_over",
        f"link {app.current} -> releases/r2",
        "nginx wait_drained",
        "supervisor retire flaskr-web-blue",
    )
    state = load_state(app)
    assert (state.live, state.slot) == ("r2", "green")
    assert {r.id: r.status for r in state.releases} == {"r1": "previous", "r2": "live"}
    assert host.supervisor.state("flaskr-web-green") == "RUNNING"
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"
    session.close()


def test_a_stage_runs_or_records_the_setup_as_told_and_the_state_says_it_is_done(
    host: FakeHost,
) -> None:
    spec = make_spec(setup="flask --app flaskr init-db")
    session = fake_session(host)
    _installed(session, host, "r1", "r2", spec=spec)
    host.conn.answer((str(host.layout.launcher),))
    state = session.handle(p.State(app=APP))
    assert isinstance(state, p.StateReply) and state.setup_done is False
    # a host that is not the release host: told where the target's setup is done
    said = session.handle(p.Stage(app=APP, release="r1", setup_done_on="web1"))
    assert isinstance(said, p.StageReply)
    assert said.notes == ["setup is done for this target on web1: not run here"]
    assert host.conn.commands == []
    session.handle(p.Commit(app=APP))
    state = session.handle(p.State(app=APP))
    assert isinstance(state, p.StateReply) and state.setup_done is True
    # and with the commands to run, now that it is done: only the release command would run
    said = session.handle(p.Stage(app=APP, release="r2", release_cmd=True))
    assert isinstance(said, p.StageReply) and said.notes == [] and host.conn.commands == []
    session.close()


def test_the_release_host_runs_the_setup_on_a_first_deploy_and_says_so(host: FakeHost) -> None:
    spec = make_spec(setup="flask --app flaskr init-db")
    session = fake_session(host)
    _installed(session, host, "r1", spec=spec)
    host.conn.answer((str(host.layout.launcher),))
    said = session.handle(p.Stage(app=APP, release="r1", release_cmd=True))
    assert isinstance(said, p.StageReply)
    assert said.notes == [
        "ran the setup command, once for this app here: flask --app flaskr init-db"
    ]
    assert [argv[-3:] for argv in host.conn.commands] == [("--app", "flaskr", "init-db")]
    session.close()


def test_stage_takes_the_apps_lock_and_closing_the_session_undoes_the_stage(
    host: FakeHost,
) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    session.handle(p.Stage(app=APP, release="r1"))
    assert session.locked == {APP}
    other = fake_session(host)
    with pytest.raises(LockHeld, match=r"app flaskr is locked by deploy by"):
        other.handle(p.Lock(app=APP, wait=0))
    session.close()  # the connection dropped before the commit
    assert "flaskr-web-blue" not in host.supervisor.programs
    assert load_state(_app(host)).live is None
    assert other.handle(p.Lock(app=APP, wait=0)) == p.Done()  # released with the session
    other.close()


def test_abort_stops_the_staged_slot_and_leaves_the_live_one(host: FakeHost) -> None:
    session = fake_session(host)
    _installed(session, host, "r1", "r2")
    _deploy(session, "r1")
    session.handle(p.Stage(app=APP, release="r2"))
    assert host.supervisor.state("flaskr-web-green") == "RUNNING"
    assert session.handle(p.Abort(app=APP)) == p.AbortReply(aborted=True)
    assert "flaskr-web-green" not in host.supervisor.programs
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"
    assert session.handle(p.Abort(app=APP)) == p.AbortReply(aborted=False)
    with pytest.raises(DeployError, match=r"nothing is staged for flaskr in this session"):
        session.handle(p.Commit(app=APP))
    assert load_state(_app(host)).live == "r1"
    session.close()


def test_closing_goes_on_when_a_staged_release_cannot_be_stopped(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    session.handle(p.Stage(app=APP, release="r1"))

    def gone() -> list[str]:
        raise ConnectionRefusedError("supervisord went away")

    monkeypatch.setattr(host.supervisor, "update", gone)
    session.close()
    assert "ConnectionRefusedError: supervisord went away" in capsys.readouterr().err
    assert session.staged == {}
    other = fake_session(host)  # the lock was let go all the same
    assert other.handle(p.Lock(app=APP, wait=0)) == p.Done()
    other.close()


def test_a_failed_stage_is_recorded_and_nothing_is_left_staged(host: FakeHost) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    host.supervisor.crash("flaskr-web-blue", "ImportError: no module named flask\n", "FATAL")
    reply, go_on = agent.answer(session, {"op": "stage", "app": APP, "release": "r1"})
    assert isinstance(reply, p.ErrorReply) and go_on
    assert reply.error.type == "HealthCheckFailed"
    assert "ImportError: no module named flask" in reply.error.message
    assert session.staged == {}
    assert {r.id: r.status for r in load_state(_app(host)).releases} == {"r1": "failed"}
    session.close()


def test_commit_prunes_releases_beyond_keep_and_old_artifacts(host: FakeHost) -> None:
    spec = make_spec(keep=1)
    session = fake_session(host)
    for i in range(12):  # artifacts received long ago, oldest first
        put_artifact(host.layout, f"old{i:02}", spec, mtime=1_000_000 + i)
    for release_id in ("r1", "r2"):  # each installed just before its deploy, as a deploy does
        _installed(session, host, release_id, spec=spec)
        _deploy(session, release_id)
    app = _app(host)
    assert sorted(p.name for p in app.releases.iterdir()) == ["r2"]
    assert {r.id: r.status for r in load_state(app).releases} == {"r1": "pruned", "r2": "live"}
    kept = sorted(m.parent.name for m in host.layout.artifacts.glob(f"*/{MANIFEST}"))
    assert kept == [*(f"old{i:02}" for i in range(4, 12)), "r1", "r2"]  # the newest 10
    session.close()


def test_a_release_path_that_leaves_the_base_ends_the_session(host: FakeHost) -> None:
    session = fake_session(host)
    for op in ("stage", "install", "lb"):
        message: dict[str, object] = {"op": op, "app": APP, "release": "../../etc"}
        if op == "lb":
            message.update(spec=SPEC_.model_dump(mode="json"), backends=[], static={})
        reply, go_on = agent.answer(session, message)
        assert isinstance(reply, p.ErrorReply), op
        assert reply.error.type == "ProtocolError" and "refusing payload path" in (
            reply.error.message
        )
        assert not go_on  # what follows the request cannot be trusted
    session.close()


def test_rollback_target_refuses_a_release_not_on_disk_with_a_usage_error(
    host: FakeHost,
) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    reply, go_on = agent.answer(session, {"op": "rollback_target", "app": APP, "to": "x9"})
    assert isinstance(reply, p.ErrorReply) and go_on
    assert (reply.error.type, reply.error.exit_code) == ("UsageError", UsageError.exit_code)
    assert "--to 'x9' is not a release on disk; releases on disk: r1" in reply.error.message
    session.close()


# --- install and receive ------------------------------------------------------------------


def test_install_records_the_release_once(host: FakeHost) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    session.handle(p.Install(app=APP, release="r1"))  # again: nothing more to record
    [record] = load_state(_app(host)).releases
    assert (record.id, record.version, record.git_sha, record.status) == (
        "r1",
        "1.0",
        "abc123",
        "installed",
    )
    state = session.handle(p.State(app=APP))
    assert isinstance(state, p.StateReply) and state.installed == ["r1"]
    session.close()


def test_install_refuses_a_base_too_deep_for_unix_sockets(tmp_path: Path) -> None:
    host = FakeHost(HostLayout(tmp_path / ("deep" * 25)))
    put_artifact(host.layout, "r1", SPEC_)
    with pytest.raises(UsageError, match=r"is too deep: the socket path"):
        fake_session(host).handle(p.Install(app=APP, release="r1"))
    assert not _app(host).releases.exists()


def test_a_request_that_crashes_the_agent_is_an_internal_error_with_a_crash_log(
    host: FakeHost,
) -> None:
    session = fake_session(host)  # no artifact r1 was received: a client's bug
    reply, go_on = agent.answer(session, {"op": "install", "app": APP, "release": "r1"})
    assert isinstance(reply, p.ErrorReply) and go_on
    assert (reply.error.type, reply.error.exit_code) == ("internal", 70)
    assert reply.error.message.startswith("internal error in shipyard's agent (install):")
    [log] = host.layout.logs.glob("agent-crash-*.log")
    assert reply.error.hint == f"The traceback is in {log} on the host; please report it."
    assert "FileNotFoundError" in log.read_text()


def test_receive_stores_the_wheels_and_the_artifact_then_installs_it(
    host: FakeHost, tmp_path: Path
) -> None:
    tree = artifact_tree(tmp_path / "sent", "r1", SPEC_, deps={DEP: b"a dependency"})
    put_release(_app(host), "r1", SPEC_)  # what the install steps would leave
    session = fake_session(host)
    files = entries(tree)
    reply = handle_with_files(session, p.Receive(release="r1", install=APP), files)
    assert reply == p.ReceiveReply(received=4)
    assert (host.layout.wheels / DEP).read_bytes() == b"a dependency"
    index = json.loads(host.layout.wheel_index.read_text())
    assert index == {DEP: wire.sha256_of(tree / "wheels" / DEP)}
    final = host.layout.artifacts / "r1"
    assert (final / "app" / APP_WHEEL).read_bytes() == b"the app's wheel"
    assert (final / SPEC).is_file() and oct(final.stat().st_mode & 0o777) == "0o755"
    assert list(host.layout.incoming.iterdir()) == []  # the work dir is gone
    assert [r.id for r in load_state(_app(host)).releases] == ["r1"]
    hello = session.handle(p.Hello())
    assert isinstance(hello, p.HelloReply)
    assert (hello.artifacts, hello.wheels) == (["r1"], index)
    session.close()


def test_hello_lists_only_the_wheels_still_in_the_store(host: FakeHost) -> None:
    host.layout.wheels.mkdir(parents=True)
    (host.layout.wheels / DEP).write_bytes(b"here")
    host.layout.wheel_index.write_text(json.dumps({DEP: "a" * 64, "gone-1.0.whl": "b" * 64}))
    hello = fake_session(host).handle(p.Hello())
    assert isinstance(hello, p.HelloReply) and hello.wheels == {DEP: "a" * 64}


def test_an_artifact_whose_wheels_are_not_on_the_host_is_refused(
    host: FakeHost, tmp_path: Path
) -> None:
    tree = artifact_tree(tmp_path / "sent", "r1", SPEC_, deps={DEP: b"a dependency"})
    (tree / "artifact" / "app" / APP_WHEEL).write_bytes(b"not what the manifest says")
    session = fake_session(host)
    artifact_only = {e.path for e in entries(tree) if e.path.startswith("artifact/")}
    with pytest.raises(DeployError, match="missing or mismatched files") as refused:
        handle_with_files(session, p.Receive(release="r1"), entries(tree, artifact_only))
    assert refused.value.message == (
        f"release r1: missing or mismatched files on this host: {DEP}, {APP_WHEEL}."
    )
    assert refused.value.hint == "Deploy again: the missing files are sent again."


def test_a_source_tree_artifact_is_checked_file_by_file(host: FakeHost, tmp_path: Path) -> None:
    files = {"app.py": b"import helpers", "templates/index.html": b"<p>hi</p>"}
    tree = artifact_tree(tmp_path / "sent", "r1", SPEC_, tree=files)
    (tree / "artifact" / "src" / "templates" / "index.html").write_bytes(b"changed on the way")
    with pytest.raises(DeployError, match="missing or mismatched files") as refused:
        handle_with_files(fake_session(host), p.Receive(release="r1"), entries(tree))
    assert refused.value.message.endswith("on this host: src/templates/index.html.")


def test_state_says_where_the_live_release_runs(host: FakeHost) -> None:
    app = _app(host)
    session = fake_session(host)
    assert session.handle(p.State(app=APP)) == p.StateReply(
        live=None, slot=None, installed=[], config_keys=[]
    )
    put_release(app, "r1", SPEC_, tree=True)
    put_release(app, "r2", SPEC_)
    for live, workdir in (("r1", app.release("r1") / "src"), ("r2", app.release("r2"))):
        state = load_state(app)
        state.live, state.slot = live, "blue"
        save_state(app, state)
        reply = session.handle(p.State(app=APP))
        assert isinstance(reply, p.StateReply) and reply.workdir == str(workdir)


def _receive_r1_then_r2_reusing(host: FakeHost, tmp_path: Path, session: agent.Session) -> p.Reply:
    """r1 in full, then r2 with only its manifest sent: its spec and app wheel are r1's."""
    first = artifact_tree(tmp_path / "r1", "r1", SPEC_)
    handle_with_files(session, p.Receive(release="r1"), entries(first))
    second = artifact_tree(tmp_path / "r2", "r2", SPEC_)
    same = [f"app/{APP_WHEEL}", SPEC]
    reuse = p.Reuse(
        base="r1", files={rel: wire.sha256_of(second / "artifact" / rel) for rel in same}
    )
    request = p.Receive(release="r2", reuse=reuse)
    sent = entries(second, {f"artifact/{MANIFEST}"})
    return handle_with_files(session, request, sent)


def test_receive_links_the_unchanged_files_of_an_earlier_artifact(
    host: FakeHost, tmp_path: Path
) -> None:
    session = fake_session(host)
    reply = _receive_r1_then_r2_reusing(host, tmp_path, session)
    assert reply == p.ReceiveReply(received=1, reuse_failed=[])
    r1, r2 = host.layout.artifacts / "r1", host.layout.artifacts / "r2"
    assert json.loads((r2 / MANIFEST).read_text())["id"] == "r2"
    assert (r2 / "app" / APP_WHEEL).stat().st_ino == (r1 / "app" / APP_WHEEL).stat().st_ino


def test_receive_copies_reused_files_when_they_cannot_be_linked(
    host: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = fake_session(host)

    def cross_device(source: Path, dest: Path) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    reply = _receive_r1_then_r2_reusing(host, tmp_path, session)
    assert reply == p.ReceiveReply(received=1, reuse_failed=[])
    r1, r2 = host.layout.artifacts / "r1", host.layout.artifacts / "r2"
    assert (r2 / "app" / APP_WHEEL).read_bytes() == (r1 / "app" / APP_WHEEL).read_bytes()
    assert (r2 / "app" / APP_WHEEL).stat().st_ino != (r1 / "app" / APP_WHEEL).stat().st_ino


def test_receive_reports_the_files_it_could_not_reuse_and_keeps_nothing(
    host: FakeHost, tmp_path: Path
) -> None:
    session = fake_session(host)
    first = artifact_tree(tmp_path / "r1", "r1", SPEC_)
    handle_with_files(session, p.Receive(release="r1"), entries(first))
    (host.layout.artifacts / "r1" / SPEC).unlink()  # pruned meanwhile, say
    second = artifact_tree(tmp_path / "r2", "r2", SPEC_, app_wheel=b"changed")
    reuse = p.Reuse(
        base="r1",
        files={  # a digest r1's file does not have, and a file r1 no longer has
            f"app/{APP_WHEEL}": wire.sha256_of(second / "artifact" / "app" / APP_WHEEL),
            SPEC: wire.sha256_of(second / "artifact" / SPEC),
        },
    )
    sent = entries(second, {f"artifact/{MANIFEST}"})
    reply = handle_with_files(session, p.Receive(release="r2", reuse=reuse), sent)
    assert reply == p.ReceiveReply(received=1, reuse_failed=[f"app/{APP_WHEEL}", SPEC])
    assert not (host.layout.artifacts / "r2").exists()  # sent in full next time


# --- operations on the live release -------------------------------------------------------


def test_restart_moves_the_live_release_to_the_other_slot_with_its_new_config(
    host: FakeHost,
) -> None:
    session = fake_session(host)
    assert session.handle(p.Restart(spec=SPEC_)) == p.RestartReply(outcome=None)  # nothing live
    _installed(session, host, "r1")
    _deploy(session, "r1")
    session.close()  # restart takes the app's lock itself
    session = fake_session(host)
    reply = session.handle(p.Restart(spec=SPEC_, config={"A": "1"}))
    assert reply == p.RestartReply(outcome=p.CommitReply(release="r1", slot="green", previous="r1"))
    app = _app(host)
    assert "A=1" in host.conn.text(app.env_file("green"))
    assert json.loads(host.conn.text(app.config_file)) == {"A": "1"}
    assert load_state(app).events[-1]["action"] == "restart"


def test_stop_then_start_the_live_slots_programs(host: FakeHost) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    with pytest.raises(UsageError, match=r"has never been deployed here"):
        session.handle(p.Start(spec=SPEC_))
    assert session.handle(p.Stop(spec=SPEC_)) == p.ProcessesReply(processes=[])
    _deploy(session, "r1")
    assert session.handle(p.Stop(spec=SPEC_)) == p.ProcessesReply(processes=["flaskr-web-blue"])
    assert host.supervisor.state("flaskr-web-blue") == "STOPPED"
    assert session.handle(p.Start(spec=SPEC_)) == p.ProcessesReply(processes=["flaskr-web-blue"])
    assert host.supervisor.state("flaskr-web-blue") == "RUNNING"
    assert host.journal[-1] == "supervisor start flaskr-web-blue"
    session.close()


def test_destroy_removes_the_app_and_stops_the_runtime_it_was_last_on(host: FakeHost) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    _deploy(session, "r1")
    session.close()  # destroy takes the app's lock itself
    app = _app(host)
    app.shared.mkdir(parents=True, exist_ok=True)
    (app.shared / "data.db").write_text("the app's data")
    session = fake_session(host)
    assert session.handle(p.Destroy(spec=SPEC_, purge=False)) == p.DestroyReply(found=True)
    assert host.supervisor.programs == {}
    assert not app.releases.exists() and not app.state_file.exists()
    assert host.runtime_stopped
    assert session.handle(p.State(app=APP)) == p.StateReply(
        live=None, slot=None, installed=[], config_keys=[]
    )
    # again: nothing is left to destroy, and the reply says so
    assert session.handle(p.Destroy(spec=SPEC_, purge=False)) == p.DestroyReply(found=False)
    # the data kept is still the app's: a purge finds it, and then nothing
    assert (app.shared / "data.db").exists()
    assert session.handle(p.Destroy(spec=SPEC_, purge=True)) == p.DestroyReply(found=True)
    assert not app.root.exists()
    assert session.handle(p.Destroy(spec=SPEC_, purge=True)) == p.DestroyReply(found=False)


def test_status_of_an_app_never_deployed_on_a_host_without_supervisord(host: FakeHost) -> None:
    reply = fake_session(host).handle(p.Status(spec=SPEC_))
    assert isinstance(reply, p.StatusReply)
    assert (reply.release, reply.supervisord, reply.healthy) == (None, False, False)
    assert (reply.health, reply.processes) == ("not deployed", [])
    assert reply.url == f"http://{LISTEN}/" and reply.base_dir == str(host.layout.base)


def test_plan_reads_the_host_and_changes_nothing(host: FakeHost) -> None:
    session = fake_session(host)
    reply = session.handle(p.Plan(spec=SPEC_, release="r1"))
    assert isinstance(reply, p.PlanReply)
    plan = reply.plan
    assert (plan.app, plan.host, plan.release) == (APP, "", "r1")  # the client names the host
    assert [s.name for s in plan.stages] == ["install", "configure", "switch"]
    assert host.conn.recorded == [] and not _app(host).root.exists()
    with pytest.raises(wire.ProtocolError, match="refusing payload path"):
        session.handle(p.Plan(spec=SPEC_, release="/etc/r1"))


def test_config_put_writes_the_config_private(host: FakeHost) -> None:
    session = fake_session(host)
    session.handle(p.ConfigPut(app=APP, config={"SECRET": "s"}))
    app = _app(host)
    assert load_config(app) == {"SECRET": "s"}
    assert app.config_file.stat().st_mode & 0o777 == 0o600


# --- the load balancer --------------------------------------------------------------------

BACKENDS = [("10.0.0.1:8000", False), ("10.0.0.2:8000", True)]


def _lb(release: str, **fields: object) -> p.Lb:
    return p.Lb.model_validate(
        {
            "app": APP,
            "release": release,
            "spec": SPEC_.model_dump(mode="json"),
            "backends": BACKENDS,
            "static": {},
            **fields,
        }
    )


def test_lb_writes_the_site_reloads_nginx_and_skips_an_unchanged_site(host: FakeHost) -> None:
    session = fake_session(host)
    app = _app(host)
    assert session.handle(_lb("r1")) == p.LbReply(changed=True)
    site = app.site_file.read_text()
    assert "server 10.0.0.1:8000 max_fails=2 fail_timeout=5s;" in site
    assert "server 10.0.0.2:8000 max_fails=2 fail_timeout=5s down;" in site  # drained
    assert "(release r1)" in site and f"access_log {app.access_log} shipyard;" in site
    assert host.journal.count("nginx reload (drain=True)") == 1
    assert session.handle(_lb("r1")) == p.LbReply(changed=False)
    assert host.journal.count("nginx reload (drain=True)") == 1  # no reload for nothing


def test_lb_restores_the_site_nginx_rejected(host: FakeHost) -> None:
    session = fake_session(host)
    app = _app(host)
    host.nginx.reject = True
    with pytest.raises(CommandFailed, match=r"nginx rejected the configuration"):
        session.handle(_lb("r1"))
    assert not app.site_file.exists()  # a first site is removed again
    host.nginx.reject = False
    session.handle(_lb("r1"))
    before = app.site_file.read_bytes()
    host.nginx.reject = True
    with pytest.raises(CommandFailed):
        session.handle(_lb("r2", backends=[("10.0.0.3:8000", False)]))
    assert app.site_file.read_bytes() == before  # the working one is put back


def _static_files(tmp_path: Path, release: str) -> list[wire.FileEntry]:
    source = tmp_path / f"static-{release}" / "0-static"
    source.mkdir(parents=True)
    (source / "app.css").write_text(f"/* {release} */")
    return entries(source.parent)


def test_lb_serves_static_files_at_the_edge_from_the_release_they_came_with(
    host: FakeHost, tmp_path: Path
) -> None:
    host.layout.runtime.mkdir(parents=True)  # where the agent's own venv lives
    session = fake_session(host)
    app = _app(host)
    edges = (host.layout.lb_static / APP).resolve()
    static = {"/static": "0-static"}
    for release in ("r1", "r2", "r3"):
        request = _lb(release, static=static, update_static=True)
        handle_with_files(session, request, _static_files(tmp_path, release))
    assert (app.root / "edge-current").resolve() == edges / "r3"
    assert (edges / "r3" / "0-static" / "app.css").read_text() == "/* r3 */"
    # the edge it replaced stays for requests under way; older ones go
    assert sorted(p.name for p in edges.iterdir()) == ["r2", "r3"]
    assert f"alias {edges / 'r3' / '0-static'}/;" in app.site_file.read_text()
    # a later update without static files keeps naming the release they came from
    session.handle(_lb("r4", static=static))
    assert "(release r3)" in app.site_file.read_text()


def test_lb_remove_takes_the_site_and_the_edge_files_away(host: FakeHost, tmp_path: Path) -> None:
    host.layout.runtime.mkdir(parents=True)
    session = fake_session(host)
    request = _lb("r1", static={"/static": "0-static"}, update_static=True)
    handle_with_files(session, request, _static_files(tmp_path, "r1"))
    app = _app(host)
    reloads = len(host.nginx.reloads)
    assert session.handle(p.LbRemove(app=APP)) == p.LbRemoveReply(removed=True)
    assert not app.site_file.exists() and not app.root.exists()
    assert not (host.layout.lb_static / APP).exists()
    assert len(host.nginx.reloads) == reloads + 1
    assert session.handle(p.LbRemove(app=APP)) == p.LbRemoveReply(removed=False)
    assert len(host.nginx.reloads) == reloads + 1  # no site: nothing to reload


def test_lb_remove_does_not_start_a_stopped_runtime_to_reload(host: FakeHost) -> None:
    session = fake_session(host)
    session.handle(_lb("r1"))
    host.supervisor.running = False
    reloads = len(host.nginx.reloads)
    assert session.handle(p.LbRemove(app=APP)) == p.LbRemoveReply(removed=True)
    assert len(host.nginx.reloads) == reloads and not _app(host).site_file.exists()


# --- the process: main, resident sessions, logs -------------------------------------------


class _AgentOs:
    """The os module as the agent sees it, for main(): the umask it sets and the fds it
    moves are recorded, not done to the test's own process; replies go to a pipe."""

    def __init__(self) -> None:
        self.umasks: list[int] = []
        self.moved: list[tuple[int, int]] = []
        self.read_end, self.write_end = os.pipe()
        self.opened: list[IO[bytes]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def umask(self, mask: int) -> int:
        self.umasks.append(mask)
        return 0o022

    def dup(self, fd: int) -> int:
        assert fd == 1, fd  # only stdout is duplicated: the replies' stream
        return self.write_end

    def dup2(self, fd: int, to: int) -> None:
        self.moved.append((fd, to))

    def fdopen(self, fd: int, mode: str) -> IO[bytes]:
        handle = os.fdopen(fd, mode)
        self.opened.append(handle)
        return handle

    def replies(self) -> list[dict[str, Any]]:
        for handle in self.opened:
            handle.close()  # an early return leaves it to the process's exit
        with os.fdopen(self.read_end, "rb") as pipe:
            return [json.loads(line) for line in pipe.read().splitlines()]


@pytest.fixture
def agent_os(monkeypatch: pytest.MonkeyPatch) -> _AgentOs:
    # main() drops PYTHONPATH from the environment: given back after the test
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    fake = _AgentOs()
    monkeypatch.setattr(agent, "os", fake)
    return fake


def _stdin(monkeypatch: pytest.MonkeyPatch, *messages: dict[str, Any]) -> None:
    stream = io.BytesIO()
    for message in messages:
        wire.send(stream, message)
    stream.seek(0)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stream))


def test_main_refuses_to_serve_as_another_lib_than_expected(
    tmp_path: Path, agent_os: _AgentOs, capsys: pytest.CaptureFixture[str]
) -> None:
    code = agent.main(
        ["session", "--base", str(tmp_path), "--listen", LISTEN, "--expect-lib", "lib-2"]
    )
    assert code == agent.NOT_READY
    assert capsys.readouterr().err.startswith("shipyard's agent here is ")
    assert "PYTHONPATH" not in os.environ  # the processes it starts must not see it


def test_main_logs_of_an_app_not_deployed_fails(
    tmp_path: Path, agent_os: _AgentOs, capsys: pytest.CaptureFixture[str]
) -> None:
    assert agent.main(["logs", "--base", str(tmp_path), "--app", APP]) == 1
    assert capsys.readouterr().err == f"app {APP} is not deployed on this host\n"


def test_main_logs_prints_the_live_releases_logs(
    host: FakeHost, agent_os: _AgentOs, capsys: pytest.CaptureFixture[str]
) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    _deploy(session, "r1")
    session.close()
    app = _app(host)
    app.logs.mkdir(parents=True)
    app.app_log("web", "blue").write_text("booted\nserving\n")
    base = str(host.layout.base)
    assert agent.main(["logs", "--base", base, "--app", APP, "--process", "web"]) == 0
    assert "serving" in capsys.readouterr().out


def test_main_logs_stops_quietly_when_the_reader_goes_away(
    host: FakeHost, agent_os: _AgentOs, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = fake_session(host)
    _installed(session, host, "r1")
    _deploy(session, "r1")
    session.close()

    def closed_pipe(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError

    from shipyard.host import logs

    monkeypatch.setattr(logs, "show", closed_pipe)
    assert agent.main(["logs", "--base", str(host.layout.base), "--app", APP]) == 0


def test_main_serves_a_session_with_replies_on_stdout_and_prints_on_stderr(
    tmp_path: Path, agent_os: _AgentOs, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch, {"op": "lock", "app": APP}, {"op": "state", "app": APP})
    lingered: list[tuple[Path, float]] = []

    def stay_resident(runtime: Path, linger: float, *rest: object) -> None:
        lingered.append((runtime, linger))

    monkeypatch.setattr(resident, "stay_resident", stay_resident)
    args = ["session", "--base", str(tmp_path), "--listen", LISTEN, "--linger", "30"]
    assert agent.main(args) == 0
    assert agent_os.umasks == [0o022]
    assert agent_os.moved == [(2, 1)]  # anything else printed goes to stderr
    assert agent_os.replies() == [
        {"ok": True},
        {
            "ok": True,
            "live": None,
            "slot": None,
            "installed": [],
            "config_keys": [],
            "setup_done": False,
            "workdir": "",
        },
    ]
    assert lingered == [(HostLayout(tmp_path).runtime, 30.0)]
    other = agent.Session(tmp_path, LISTEN, io.BytesIO())  # the session ended: lock released
    assert other.handle(p.Lock(app=APP)) == p.Done()
    other.close()


def test_main_reports_a_session_it_cannot_set_up_as_an_error_reply(
    tmp_path: Path, agent_os: _AgentOs, monkeypatch: pytest.MonkeyPatch
) -> None:
    _stdin(monkeypatch)
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # root hands the app to its user
    args = ["session", "--base", str(tmp_path), "--listen", LISTEN, "--app-user", "no-such-user"]
    assert agent.main(args) == 1
    [reply] = agent_os.replies()
    error = p.ErrorReply.model_validate(reply).error
    assert error.type == "HostError"
    assert "the app user 'no-such-user' does not exist" in error.message


def test_a_resident_agent_serves_a_session_for_its_base_only(tmp_path: Path) -> None:
    ready: list[bool] = []
    stream = io.BytesIO()
    wire.send(stream, {"op": "state", "app": APP})
    stream.seek(0)
    header = {"base": str(tmp_path), "listen": LISTEN}
    for wrong in ({**header, "base": str(tmp_path / "other")}, {"base": str(tmp_path)}):
        replies = io.BytesIO()
        agent._resident_session(tmp_path, wrong, stream, replies, lambda: ready.append(True))
        assert (ready, replies.getvalue()) == ([], b"")  # left to a full agent over ssh
    replies = io.BytesIO()
    agent._resident_session(tmp_path, header, stream, replies, lambda: ready.append(True))
    assert ready == [True]
    assert json.loads(replies.getvalue())["live"] is None


def test_the_agents_marks_are_its_lib_and_its_runtime_as_on_disk(tmp_path: Path) -> None:
    venv = HostLayout(tmp_path).runtime_venv
    venv.mkdir(parents=True)
    (venv / ".shipyard-runtime").write_text("runtime-7\n")
    lib, runtime_mark = agent._marks(tmp_path)
    assert runtime_mark == "runtime-7"
    lib_file = Path(agent.__file__).resolve().parents[2] / ".shipyard-lib"
    assert lib == (lib_file.read_text().strip() if lib_file.is_file() else "")
    hello = agent.Session(tmp_path, LISTEN, io.BytesIO()).handle(p.Hello())
    assert isinstance(hello, p.HelloReply) and hello.runtime == "runtime-7"


def test_the_agent_site_conf_uses_the_combined_log_format_under_the_system_nginx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = FakeHost(HostLayout(tmp_path, system_nginx=True))
    sites = tmp_path / "conf.d"
    monkeypatch.setattr(HostLayout, "nginx_sites", property(lambda self: sites))
    session = agent.Session(
        tmp_path, LISTEN, io.BytesIO(), system_nginx=True, conn=host.conn, servers=host.servers
    )
    session.handle(_lb("r1"))
    site = (sites / "shipyard-flaskr.conf").read_text()
    assert f"access_log {_app(host).access_log} combined;" in site


def test_scale_adds_worker_instances_on_the_live_slot_and_restarts_for_web(
    host: FakeHost,
) -> None:
    spec = make_spec(processes={"worker": "rq worker"})
    session = fake_session(host)
    _installed(session, host, "r1", spec=spec)
    _deploy(session, "r1")
    session.close()  # scale takes the app's lock itself
    session = fake_session(host)
    reply = session.handle(p.Scale(spec=spec, changes={"worker": 3}))
    assert reply == p.ScaleReply(scale={"worker": 3}, restarted=None)
    workers = ["flaskr-worker-blue", "flaskr-worker-1-blue", "flaskr-worker-2-blue"]
    assert [host.supervisor.state(name) for name in workers] == ["RUNNING"] * 3
    assert "supervisor start flaskr-web-green" not in host.journal  # web left alone
    host.supervisor.crash("flaskr-worker-3-blue", "KeyError: 'REDIS_URL'\n")
    with pytest.raises(DeployError, match=r"process worker-3 did not stay up"):
        session.handle(p.Scale(spec=spec, changes={"worker": 4}))
    assert "flaskr-worker-3-blue" not in host.supervisor.programs  # undone
    reply = session.handle(p.Scale(spec=spec, changes={"web": 3}))
    assert reply == p.ScaleReply(scale={"web": 3, "worker": 3}, restarted="r1")
    green = host.conn.text(_app(host).program_file("green"))
    assert "gunicorn.conf.py --workers 3 --bind" in green
    assert green.count("[program:flaskr-worker") == 3
    status = session.handle(p.Status(spec=spec))
    assert isinstance(status, p.StatusReply) and status.scale == {"web": 3, "worker": 3}
    session.close()
