"""The agent's side of the protocol on a tmp base dir (no servers), and the client's parsing
of what an agent answers, including an agent of another protocol version."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from fleetfakes import fake_remote

from shipyard.errors import DeployError, LockHeld
from shipyard.fleet.remote import Agent, ProtocolMismatch, RemoteError, read_reply
from shipyard.host import agent, wire
from shipyard.host import protocol as p
from shipyard.host.layout import HostLayout
from shipyard.host.state import AppState, ReleaseRecord, save_state


def _session(base: Path, stream: bytes = b"") -> agent.Session:
    return agent.Session(base, "127.0.0.1:8080", io.BytesIO(stream))


def _serve(base: Path, *messages: dict[str, Any]) -> list[dict[str, Any]]:
    stream = io.BytesIO()
    for message in messages:
        wire.send(stream, message)
    session = _session(base, stream.getvalue())
    replies = io.BytesIO()
    try:
        agent.serve(session, replies)
    finally:
        session.close()
    return [json.loads(line) for line in replies.getvalue().splitlines()]


def test_every_request_of_the_union_has_a_handler_and_a_reply_model(tmp_path: Path) -> None:
    kinds = get_args(get_args(p.AnyRequest)[0])
    assert set(_session(tmp_path).handlers()) == set(kinds)
    assert p.Stage.reply_model is p.StageReply and p.Lock.reply_model is p.Done
    assert p.Hello.reply_model is p.HelloReply and p.Lb.reply_model is p.LbReply


def test_hello_reports_the_protocol_and_the_apps_state(tmp_path: Path) -> None:
    session = _session(tmp_path)
    said = session.handle(p.Hello(app="flaskr", lock=p.LockParams(wait=0)))
    assert isinstance(said, p.HelloReply) and said.protocol == p.PROTOCOL_VERSION
    assert said.state == p.StateReply(live=None, slot=None, installed=[], config_keys=[])
    assert session.locked == {"flaskr"}
    session.close()


def test_a_second_session_cannot_take_a_held_lock(tmp_path: Path) -> None:
    first, second = _session(tmp_path), _session(tmp_path)
    first.handle(p.Lock(app="flaskr"))
    with pytest.raises(LockHeld):
        second.handle(p.Lock(app="flaskr", wait=0))
    first.close()
    second.handle(p.Lock(app="flaskr", wait=0))  # free again once the first session ended
    second.close()


def test_bad_app_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="bad app name"):
        _session(tmp_path).handle(p.State(app="../etc"))


def test_config_put_then_get_and_state_lists_the_keys(tmp_path: Path) -> None:
    session = _session(tmp_path)
    session.handle(p.ConfigPut(app="flaskr", config={"B": "2", "A": "1"}))
    assert session.handle(p.ConfigGet(app="flaskr")) == p.ConfigReply(config={"A": "1", "B": "2"})
    state = session.handle(p.State(app="flaskr"))
    assert isinstance(state, p.StateReply) and state.config_keys == ["A", "B"]


def test_releases_and_the_rollback_target_come_from_the_state(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("flaskr")
    records = [
        ReleaseRecord("r1", "t", status="previous", deployed_at="t1", deployed_seq=1),
        ReleaseRecord("r2", "t", status="live", deployed_seq=2),
    ]
    save_state(app, AppState(releases=records, live="r2", slot="green"))
    (app.release("r1")).mkdir(parents=True)
    (app.release("r1") / ".complete").touch()  # what an install leaves
    session = _session(tmp_path)
    listed = session.handle(p.Releases(app="flaskr"))
    assert isinstance(listed, p.ReleasesReply)
    assert [(r.id, r.live, r.on_disk) for r in listed.releases] == [
        ("r2", True, False),
        ("r1", False, True),
    ]
    assert session.handle(p.RollbackTarget(app="flaskr")) == p.RollbackTargetReply(release="r1")


def _payload(tmp_path: Path, good: bool) -> tuple[bytes, list[wire.FileEntry]]:
    source = tmp_path / "w.whl"
    source.write_bytes(b"wheel" * 100)
    entry = wire.file_entry("wheels/w-1-py3-none-any.whl", source)
    if not good:
        entry = wire.FileEntry(entry.path, entry.size, "0" * 64, source)
    stream = io.BytesIO()
    request = p.Receive(release="r1").model_dump(mode="json", exclude={"files"})
    wire.send(stream, request, [entry])
    return stream.getvalue(), [entry]


def test_receive_stores_checked_wheels_then_checks_the_artifact(tmp_path: Path) -> None:
    data, _ = _payload(tmp_path, good=True)
    [reply] = _serve(tmp_path / "base", json.loads(data.split(b"\n", 1)[0]))
    # a wheel alone is no artifact: the wheel is stored, the release refused
    assert (reply["ok"] is False and reply["error"]["type"] == "FileNotFoundError") or reply[
        "error"
    ]["type"] in ("internal", "ProtocolError")
    stream = io.BytesIO(data)
    session = agent.Session(tmp_path / "base", "127.0.0.1:8080", stream)
    request = p.parse_request(wire.receive(stream) or {})
    with pytest.raises(FileNotFoundError):
        session.handle(request)
    assert (tmp_path / "base" / ".shipyard" / "wheels" / "w-1-py3-none-any.whl").is_file()


def test_receive_refuses_a_payload_corrupted_in_transit(tmp_path: Path) -> None:
    data, _ = _payload(tmp_path, good=False)
    stream = io.BytesIO(data)
    session = agent.Session(tmp_path / "base", "127.0.0.1:8080", stream)
    request = p.parse_request(wire.receive(stream) or {})
    with pytest.raises(wire.ProtocolError, match="corrupted in transit"):
        session.handle(request)
    assert not (tmp_path / "base" / ".shipyard" / "wheels" / "w-1-py3-none-any.whl").exists()


def test_serve_answers_errors_as_models_and_goes_on_after_a_shipyard_error(
    tmp_path: Path,
) -> None:
    replies = _serve(
        tmp_path,
        {"op": "commit", "app": "flaskr"},
        {"op": "state", "app": "flaskr"},
    )
    failed = p.ErrorReply.model_validate(replies[0])
    assert failed.error.type == "DeployError" and "nothing is staged" in failed.error.message
    assert replies[1] == {
        "ok": True,
        "live": None,
        "slot": None,
        "installed": [],
        "config_keys": [],
        "setup_done": False,
        "workdir": "",
    }


def test_an_unknown_op_or_an_extra_key_is_an_invalid_request_that_ends_the_session(
    tmp_path: Path,
) -> None:
    replies = _serve(tmp_path, {"op": "teleport"}, {"op": "state", "app": "flaskr"})
    assert len(replies) == 1  # the stream is not trusted after it
    error = p.ErrorReply.model_validate(replies[0]).error
    assert error.type == "InvalidRequest" and "teleport" in error.message
    assert error.protocol == p.PROTOCOL_VERSION
    [extra] = _serve(tmp_path, {"op": "state", "app": "flaskr", "colour": "blue"})
    assert "colour" in extra["error"]["message"]


def test_a_hello_of_another_protocol_version_is_a_mismatch(tmp_path: Path) -> None:
    [reply] = _serve(tmp_path, {"op": "hello", "protocol": 99, "shape": "of the future"})
    error = p.ErrorReply.model_validate(reply).error
    assert error.type == "ProtocolMismatch" and error.protocol == p.PROTOCOL_VERSION
    assert "client speaks protocol 99" in error.message


def test_a_stream_that_is_no_message_gets_a_protocol_error(tmp_path: Path) -> None:
    session = _session(tmp_path, b"not json\n")
    replies = io.BytesIO()
    agent.serve(session, replies)
    assert json.loads(replies.getvalue())["error"]["type"] == "ProtocolError"


# --- the client's side ----------------------------------------------------------------------


def test_the_client_parses_replies_into_their_models_and_errors_into_remote_errors() -> None:
    reply = read_reply(
        "web1", p.Stage(app="a", release="r"), {"ok": True, "slot": "blue", "previous": None}
    )
    assert reply == p.StageReply(slot="blue", previous=None)
    error = {"ok": False, "error": {"type": "LockHeld", "message": "held", "exit_code": 75}}
    with pytest.raises(RemoteError) as raised:
        read_reply("web1", p.Lock(app="a"), error)
    assert raised.value.exit_code == 75 and raised.value.kind == "LockHeld"
    assert raised.value.message == "web1 (lock): held"


OTHER = p.PROTOCOL_VERSION + 1  # an agent of the next protocol
EARLIER = p.PROTOCOL_VERSION - 1  # and one of the previous


@pytest.mark.parametrize(
    ("raw", "theirs"),
    [
        # an agent of another version that answered the hello in its own shape
        ({"ok": True, "protocol": OTHER, "version": "9", "shape": "new"}, OTHER),
        # one whose hello has our shape but another version
        (None, EARLIER),
        # an older agent that cannot read the request
        ({"ok": False, "error": {"type": "InvalidRequest", "message": "?", "protocol": 0}}, 0),
        # and one whose reply is not even an error we know
        ({"ok": False, "oops": 1}, None),
    ],
)
def test_a_reply_of_another_protocol_is_a_mismatch_naming_both_versions(
    raw: dict[str, Any] | None, theirs: int | None
) -> None:
    if raw is None:
        hello = _hello_body(protocol=EARLIER)
        raw = {"ok": True, **hello}
    with pytest.raises(ProtocolMismatch) as raised:
        read_reply("web1", p.Hello(), raw)
    assert raised.value.theirs == theirs and raised.value.ours == p.PROTOCOL_VERSION
    text = raised.value.message
    assert text.startswith("web1: its agent speaks protocol ")
    assert f"this machine's shipyard protocol {p.PROTOCOL_VERSION}" in text


def _hello_body(**changes: Any) -> dict[str, Any]:
    body = {
        "protocol": p.PROTOCOL_VERSION, "version": "0", "runtime": "", "interpreter": "",
        "python": "3.11.2", "platform": "linux-x86_64", "libc": "", "user": "root",
        "wheels": {}, "artifacts": [],
    }  # fmt: skip
    return {**body, **changes}


def test_an_agent_stream_of_another_version_is_a_mismatch_over_a_real_pipe(
    tmp_path: Path,
) -> None:
    """A stand-in agent process that reads the hello and answers as the next protocol would."""
    script = (
        "import sys, json; sys.stdin.readline();"
        f"print(json.dumps({{'ok': True, **{_hello_body(protocol=OTHER)!r}}}), flush=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    session = Agent(fake_remote("web1", tmp_path, "web"), proc)  # no stderr thread: closed here
    try:
        with pytest.raises(ProtocolMismatch, match=f"web1: its agent speaks protocol {OTHER}"):
            session.call(p.Hello())
    finally:
        session.close()
        for pipe in (proc.stdout, proc.stderr):
            assert pipe is not None
            pipe.close()
