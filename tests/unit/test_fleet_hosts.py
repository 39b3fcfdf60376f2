"""The fleet's work on hosts' shells, over fake ssh connections (fleetfakes.FakeSSH): checking
hosts, provisioning them, syncing the agent, and opening sessions."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, cast

import pytest
from fleetfakes import FakeHost, FakeSSH, example_spec, facts_text, hello_reply, ssh_fleet

from shipyard.errors import HostError, LockHeld
from shipyard.events import Silent
from shipyard.fleet import fleet as fleets
from shipyard.fleet.fleet import FleetError
from shipyard.fleet.remote import Agent, RemoteHost, lib_id, runtime_id
from shipyard.fleet.ssh import SSH_FAILED
from shipyard.host import protocol as p

SPEC = example_spec()
STALE_LIB = "0123456789abcdef"  # what an agent synced by another shipyard left as its mark


def _conns(tmp_path: Path, *names: str, **made: FakeSSH) -> dict[str, FakeSSH]:
    return {**{name: FakeSSH(name, tmp_path) for name in names}, **made}


# --- check ------------------------------------------------------------------------------------


def test_check_hosts_says_what_keeps_each_host_from_a_deploy(tmp_path: Path) -> None:
    conns = _conns(
        tmp_path,
        "web1",
        web2=FakeSSH("web2", tmp_path, facts_exit=1),
        web3=FakeSSH("web3", tmp_path, facts_text(nginx="", runtime="")),
        web4=FakeSSH("web4", tmp_path, facts_text(runtime="old")),
        web5=FakeSSH("web5", tmp_path, facts_text(disk_free_kb=str(100 * 1024))),
        web6=FakeSSH("web6", tmp_path, facts_text(disk_free_kb="")),  # df said nothing
    )
    found = fleets.check_hosts(ssh_fleet(tmp_path, conns, app_user="app"))
    assert found == {
        "web1": "",
        "web2": "cannot read the host's facts (exit 1):\n  | sudo: a password is required",
        "web3": "is not ready: nginx; shipyard's runtime (supervisord and the agent) is not "
        "installed.",
        "web4": "is not ready: shipyard's runtime (supervisord and the agent) is out of date.",
        "web5": "only 100 MiB free under /srv/shipyard",
        "web6": "",
    }
    # the facts are read for the target's app user, and nothing else is run
    assert all(c.ran[0].argv[-2:] == ("/srv/shipyard", "app") for c in conns.values())
    assert all(c.scripts == [] for c in conns.values())


# --- provision --------------------------------------------------------------------------------


def test_a_dry_run_provision_lists_each_hosts_missing_steps_and_runs_none(tmp_path: Path) -> None:
    conns = _conns(
        tmp_path,
        "web1",
        web2=FakeSSH("web2", tmp_path, facts_text(app_user="", nginx="", systemd="yes")),
    )
    planned = fleets.provision_fleet(ssh_fleet(tmp_path, conns), Silent(), dry_run=True)
    assert planned["web1"] == []
    assert planned["web2"][:2] == ["install nginx (apt)", "create the app user shipyard"]
    assert planned["web2"][2].startswith("start supervisord at boot (shipyard-")
    assert all(c.scripts == [] for c in conns.values())


def test_provision_runs_only_the_missing_steps_and_reports_those_that_changed(
    tmp_path: Path,
) -> None:
    conns = _conns(
        tmp_path,
        web1=FakeSSH("web1", tmp_path, facts_text(app_user="", systemd="yes")),
        web2=FakeSSH("web2", tmp_path, facts_text(systemd="yes")),
    )
    conns["web2"].stdout = ""  # its boot unit is already the one it would write
    done = fleets.provision_fleet(ssh_fleet(tmp_path, conns), Silent(), dry_run=False)
    assert done["web1"][0] == "create the app user shipyard"
    assert done["web1"][1].startswith("start supervisord at boot")
    assert done["web2"] == []  # ran, but changed nothing
    assert "useradd --system" in conns["web1"].scripts[0]
    assert len(conns["web2"].scripts) == 1 and "systemctl enable" in conns["web2"].scripts[0]


def test_provision_failures_name_each_host_and_the_others_are_still_provisioned(
    tmp_path: Path,
) -> None:
    conns = _conns(
        tmp_path,
        web1=FakeSSH("web1", tmp_path, facts_text(app_user="")),
        web2=FakeSSH("web2", tmp_path, facts_text(nginx="", apt="", os="alpine 3.19")),
        web3=FakeSSH("web3", tmp_path, facts_text(app_user="")),
    )
    conns["web3"].fail_on = "useradd"
    with pytest.raises(FleetError) as raised:
        fleets.provision_fleet(ssh_fleet(tmp_path, conns), Silent(), dry_run=False)
    assert [(f.host, f.stage) for f in raised.value.failures] == [
        ("web2", "provision"),
        ("web3", "provision"),
    ]
    message = raised.value.message
    assert message.startswith("2 host(s) failed to provision:")
    assert "web2: is missing nginx and has no apt-get (alpine 3.19)." in message
    assert "web3: provisioning failed at 'create the app user shipyard' (exit 100)" in message
    assert "  | E: Unable to locate package nginx" in message
    assert "Hosts not listed are provisioned" in str(raised.value.hint)
    assert len(conns["web1"].scripts) == 1 and conns["web2"].scripts == []


# --- reaching the agent over ssh --------------------------------------------------------------


def test_a_host_is_ready_as_it_is_when_its_agent_is_this_shipyards(tmp_path: Path) -> None:
    conns = _conns(tmp_path, "web1")
    fleet = ssh_fleet(tmp_path, conns)
    fleets.connect(fleet, Silent())
    assert conns["web1"].scripts == []
    assert fleet.hosts[0].facts is not None and fleet.hosts[0].facts.lib == lib_id()


def test_a_host_with_another_shipyards_agent_is_sent_this_one(tmp_path: Path) -> None:
    # another Python than this one's: the payload is sources only (no bytecode to compile here)
    facts = facts_text(
        python="3.12.1 linux-x86_64", lib=STALE_LIB, runtime=runtime_id("3.12", "/usr/bin/python3")
    )
    conns = _conns(tmp_path, web1=FakeSSH("web1", tmp_path, facts))
    fleet = ssh_fleet(tmp_path, conns)
    fleets.SSHReach().ready(fleet, fleet.hosts[0])
    (script,) = conns["web1"].scripts
    assert 'mv "$rt/lib.new" "$rt/lib"' in script and lib_id() in script
    payload = conns["web1"].sent[-1]
    assert isinstance(payload, Path)
    with tarfile.open(payload) as tar:
        names = tar.getnames()
    assert "shipyard/host/agent.py" in names and not any(n.endswith(".pyc") for n in names)


def test_connecting_stops_at_hosts_that_are_not_provisioned_before_any_sync(
    tmp_path: Path,
) -> None:
    conns = _conns(
        tmp_path, "web1", web2=FakeSSH("web2", tmp_path, facts_text(python="", lib=STALE_LIB))
    )
    with pytest.raises(FleetError) as raised:
        fleets.connect(ssh_fleet(tmp_path, conns), Silent())
    assert [f.host for f in raised.value.failures] == ["web2"]
    assert "[connect] web2: is not ready: python3;" in raised.value.message
    assert conns["web2"].scripts == []  # the agent is not synced to a host that cannot run it


# --- open_current: the agent's fast path, and what it does when the hello fails ------------------


class _Session:
    """What Agent.open gives: a session whose hello answers `reply` or raises `error`."""

    def __init__(self, reply: p.HelloReply, error: Exception | None = None, exit: int = 0) -> None:
        self.reply, self.error, self.closed = reply, error, False
        self.hellos: list[p.Request[Any]] = []
        self.proc = type("Proc", (), {"returncode": exit})()

    def call(self, request: p.Request[Any], files: object = ()) -> Any:
        self.hellos.append(request)
        if self.error is not None:
            raise self.error
        return self.reply

    def close(self) -> None:
        self.closed = True


def _opening(monkeypatch: pytest.MonkeyPatch, *sessions: _Session) -> list[_Session]:
    queue = list(sessions)
    monkeypatch.setattr(Agent, "open", classmethod(lambda cls, host: queue.pop(0)))
    return queue


CURRENT = hello_reply(FakeHost(), None).model_copy(
    update={"runtime": runtime_id("3.11", "/usr/bin/python3")}
)
OUTDATED = hello_reply(FakeHost(), None)  # a runtime this shipyard would not install


def _one_host(tmp_path: Path, facts: str = "") -> tuple[fleets.Fleet, RemoteHost, FakeSSH]:
    conn = FakeSSH("web1", tmp_path, facts)
    fleet = ssh_fleet(tmp_path, {"web1": conn})
    return fleet, fleet.hosts[0], conn


def test_a_current_agent_is_used_at_once_without_reading_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, host, conn = _one_host(tmp_path)
    first = _Session(CURRENT)
    left = _opening(monkeypatch, first)
    hello = p.Hello(app="flaskr")
    agent, said = fleet.reach.open(fleet, host, hello)
    assert agent is cast(Any, first) and said == CURRENT and first.hellos == [hello]
    assert not first.closed and left == [] and conn.ran == []


def test_an_agent_that_did_not_start_is_synced_and_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    facts = facts_text(
        python="3.12.1 linux-x86_64", lib=STALE_LIB, runtime=runtime_id("3.12", "/usr/bin/python3")
    )
    fleet, host, conn = _one_host(tmp_path, facts)
    first = _Session(OUTDATED, HostError("web1", "the agent exited at once (exit 1)"), exit=1)
    second = _Session(CURRENT)
    _opening(monkeypatch, first, second)
    agent, said = fleets.open_current(fleet, host)
    assert agent is cast(Any, second) and said == CURRENT and first.closed
    assert len(conn.scripts) == 1 and lib_id() in conn.scripts[0]  # the agent was synced


def test_an_out_of_date_runtime_with_a_current_lib_reopens_without_a_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, host, conn = _one_host(tmp_path)
    first, second = _Session(OUTDATED), _Session(CURRENT)
    _opening(monkeypatch, first, second)
    agent, _ = fleets.open_current(fleet, host)
    assert agent is cast(Any, second) and first.closed
    assert conn.scripts == [] and len(conn.ran) == 1  # the facts only


def test_ssh_failing_to_connect_is_raised_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, host, conn = _one_host(tmp_path)
    unreachable = HostError("web1", "ssh could not connect: Connection refused")
    first = _Session(OUTDATED, unreachable, exit=SSH_FAILED)
    left = _opening(monkeypatch, first, _Session(CURRENT))
    with pytest.raises(HostError, match="Connection refused"):
        fleets.open_current(fleet, host)
    assert first.closed and len(left) == 1 and conn.ran == []


def test_an_agent_that_answers_no_is_closed_and_its_answer_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, host, conn = _one_host(tmp_path)
    first = _Session(OUTDATED, LockHeld("app flaskr is locked by deploy by ann"))
    left = _opening(monkeypatch, first, _Session(CURRENT))
    with pytest.raises(LockHeld):
        fleets.open_current(fleet, host, p.Hello(app="flaskr"))
    assert first.closed and len(left) == 1 and conn.ran == []


def test_a_failing_hello_after_the_sync_closes_the_second_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fleet, host, _conn = _one_host(tmp_path)
    first = _Session(OUTDATED)
    second = _Session(OUTDATED, LockHeld("app flaskr is locked by rollback by bob"))
    _opening(monkeypatch, first, second)
    with pytest.raises(LockHeld, match="rollback by bob"):
        fleets.open_current(fleet, host)
    assert first.closed and second.closed
