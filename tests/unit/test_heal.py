"""heal.decide over many situations: facts as /proc would show them, the actions they call for."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.host import heal
from shipyard.host.orphans import Facts, Listener, Proc

BASE = Path("/srv/sy")
PORT = "127.0.0.1:8080"
BLUE = f"{BASE}/flaskr/shared/run/blue.sock"
GREEN = f"{BASE}/flaskr/shared/run/green.sock"
NGINX_MASTER = "nginx: master process /usr/sbin/nginx -p /srv/sy/.shipyard/nginx/ -c ..."
GUNICORN = "/srv/sy/flaskr/releases/r1/venv/bin/python .../gunicorn --bind unix:..."

SUPERVISORD = 10
MASTER, WORKERS = 20, (21, 22)
SERVER, SERVER_WORKERS = 30, (31, 32)


def _procs(*procs: tuple[int, int, str, str]) -> dict[int, Proc]:
    return {pid: Proc(pid, ppid, comm, cmdline) for pid, ppid, comm, cmdline in procs}


def _world(
    *,
    supervisord: bool = True,
    master_alive: bool = True,
    server_parent: int | None = SUPERVISORD,
    nginx_state: str = "RUNNING",
    port_holder: tuple[int, int, str, str] | None = None,
) -> Facts:
    """The base with one app on blue: supervisord, nginx and its workers holding the port,
    gunicorn and its workers holding blue's socket; each part alive or orphaned as told."""
    procs = []
    if supervisord:
        procs.append((SUPERVISORD, 1, "python", "python -m supervisor.supervisord"))
    worker_parent = MASTER if master_alive else 1
    if master_alive:
        procs.append((MASTER, SUPERVISORD if supervisord else 1, "nginx", NGINX_MASTER))
    procs += [(w, worker_parent, "nginx", "nginx: worker process") for w in WORKERS]
    port_pids = ([MASTER] if master_alive else []) + list(WORKERS)
    if port_holder is not None:
        procs = [p for p in procs if p[0] not in (MASTER, *WORKERS)] + [port_holder]
        port_pids = [port_holder[0]]
    if server_parent is not None:
        procs.append((SERVER, server_parent if supervisord else 1, "python", GUNICORN))
        procs += [(w, SERVER, "python", GUNICORN) for w in SERVER_WORKERS]
    sockets = (
        (Listener(BLUE, 500, tuple((p, 5) for p in (SERVER, *SERVER_WORKERS))),)
        if server_parent is not None
        else ()
    )
    return Facts(
        base=BASE,
        supervisord=SUPERVISORD if supervisord else None,
        nginx=MASTER if supervisord and master_alive else None,
        nginx_state=nginx_state if supervisord else "",
        ports=(Listener(PORT, 400, tuple((p, 6) for p in port_pids)),),
        sockets=sockets,
        nginx_pidfile=MASTER if master_alive else None,
        procs=_procs(*procs),
    )


LIVE = {"flaskr": "blue"}


def test_a_whole_runtime_needs_nothing() -> None:
    assert heal.decide(_world(), LIVE) == []


def test_a_dead_supervisord_comes_back_without_a_second_server_and_takes_over() -> None:
    actions = heal.decide(_world(supervisord=False), LIVE)
    assert [type(a) for a in actions] == [
        heal.SetAside,
        heal.StartSupervisord,
        heal.HandOverNginx,
        heal.ReplaceApp,
    ]
    set_aside, _, takeover, replace = actions
    assert set_aside == heal.SetAside("flaskr", "blue")  # before supervisord starts
    assert isinstance(takeover, heal.HandOverNginx)
    assert takeover.quit == (MASTER,)  # the master tells its workers
    assert takeover.listeners == ((MASTER, 6),)  # one (pid, fd) per socket
    assert isinstance(replace, heal.ReplaceApp)
    assert (replace.app, replace.slot, replace.pids) == ("flaskr", "blue", (SERVER,))
    assert "runs without supervisord" in (replace.problem() or "")


def test_a_dead_nginx_master_leaves_workers_whose_sockets_are_taken_over() -> None:
    # supervisord restarts nginx (pid 40), which cannot bind: the workers are the orphans
    facts = _world(master_alive=False, nginx_state="STARTING")
    facts = Facts(**{**facts.__dict__, "nginx": 40})
    actions = heal.decide(facts, LIVE)
    assert len(actions) == 1
    takeover = actions[0]
    assert isinstance(takeover, heal.HandOverNginx)
    assert takeover.quit == WORKERS  # no master: each worker quits itself
    assert takeover.listeners[0][0] in WORKERS
    assert PORT in (takeover.problem() or "") and "pid 21" in (takeover.problem() or "")


def test_both_dead() -> None:
    actions = heal.decide(_world(supervisord=False, master_alive=False), LIVE)
    assert [type(a) for a in actions] == [
        heal.SetAside,
        heal.StartSupervisord,
        heal.HandOverNginx,
        heal.ReplaceApp,
    ]
    assert isinstance(actions[2], heal.HandOverNginx) and actions[2].quit == WORKERS


@pytest.mark.parametrize("supervisord", [True, False])
def test_a_port_held_by_another_program_is_named_not_taken(supervisord: bool) -> None:
    squatter = (77, 1, "python3", "python3 -m http.server 8080")
    actions = heal.decide(_world(supervisord=supervisord, port_holder=squatter), LIVE)
    taken = [a for a in actions if isinstance(a, heal.PortTaken)]
    assert taken == [heal.PortTaken(PORT, 77, "python3 -m http.server 8080")]
    assert not any(isinstance(a, heal.HandOverNginx | heal.StartNginx) for a in actions)
    assert "pid 77 (python3 -m http.server 8080)" in (taken[0].problem() or "")


def test_another_bases_nginx_on_the_port_is_named_not_taken_over() -> None:
    other = (78, 1, "nginx", "nginx: master process /usr/sbin/nginx -c /srv/other/nginx.conf")
    facts = _world(supervisord=False, port_holder=other)
    facts = Facts(**{**facts.__dict__, "procs": {**facts.procs, 78: Proc(*other, of_base=False)}})
    actions = heal.decide(facts, LIVE)
    assert [a for a in actions if isinstance(a, heal.PortTaken)] == [
        heal.PortTaken(PORT, 78, other[3])
    ]
    assert not any(isinstance(a, heal.HandOverNginx) for a in actions)


def test_an_nginx_that_supervisord_gave_up_on_is_started() -> None:
    facts = _world(master_alive=False, nginx_state="FATAL")
    facts = Facts(**{**facts.__dict__, "ports": (), "procs": {}})
    assert heal.decide(facts, LIVE) == [heal.StartNginx("FATAL")]


def test_an_orphan_on_the_idle_slot_is_stopped_not_replaced() -> None:
    facts = _world(supervisord=False)
    green = Listener(GREEN, 600, ((60, 5),))
    procs = {**facts.procs, 60: Proc(60, 1, "python", GUNICORN)}
    facts = Facts(**{**facts.__dict__, "sockets": (*facts.sockets, green), "procs": procs})
    actions = heal.decide(facts, LIVE)
    assert heal.SetAside("flaskr", "green") in actions
    stops = [a for a in actions if isinstance(a, heal.StopOrphan)]
    assert [(a.slot, a.pids, a.keep_path) for a in stops] == [("green", (60,), False)]
    assert [a.slot for a in actions if isinstance(a, heal.ReplaceApp)] == ["blue"]


def test_an_orphan_whose_socket_path_a_supervised_server_took_keeps_that_path() -> None:
    # what an earlier `start` did: a second server on blue, beside the orphan, which deletes
    # the path (now the new server's) as it exits
    facts = _world(server_parent=1)  # supervisord alive; the first server orphaned
    second = Listener(BLUE, 501, ((50, 5),))
    procs = {**facts.procs, 50: Proc(50, SUPERVISORD, "python", GUNICORN)}
    facts = Facts(**{**facts.__dict__, "sockets": (*facts.sockets, second), "procs": procs})
    actions = heal.decide(facts, LIVE)
    assert actions == [
        heal.StopOrphan("flaskr", "blue", (SERVER,), actions[0].orphans, keep_path=True)  # type: ignore[union-attr]
    ]


def test_an_app_no_longer_deployed_has_its_orphans_stopped() -> None:
    actions = heal.decide(_world(supervisord=False), {"flaskr": None})
    assert any(isinstance(a, heal.StopOrphan) and a.pids == (SERVER,) for a in actions)
    assert not any(isinstance(a, heal.ReplaceApp) for a in actions)


def test_a_stale_pid_file_naming_an_orphaned_master_that_holds_nothing() -> None:
    facts = Facts(
        base=BASE,
        supervisord=SUPERVISORD,
        nginx=MASTER,
        nginx_state="RUNNING",
        nginx_pidfile=90,
        procs=_procs((90, 1, "nginx", NGINX_MASTER), (MASTER, SUPERVISORD, "nginx", "x")),
    )
    [takeover] = heal.decide(facts, LIVE)
    assert isinstance(takeover, heal.HandOverNginx)
    assert takeover.quit == (90,) and takeover.listeners == ()


def test_a_pid_file_naming_a_process_that_is_not_nginx_is_ignored() -> None:
    facts = Facts(**{**_world().__dict__, "nginx_pidfile": 91})
    facts = Facts(**{**facts.__dict__, "procs": {**facts.procs, 91: Proc(91, 1, "bash", "bash")}})
    assert heal.decide(facts, LIVE) == []


def test_the_hosts_own_nginx_is_not_shipyards_to_heal() -> None:
    facts = Facts(**{**_world(master_alive=False).__dict__, "system_nginx": True})
    assert not any(isinstance(a, heal.HandOverNginx) for a in heal.decide(facts, LIVE))


@pytest.mark.parametrize(
    ("path", "where"),
    [
        (BLUE, ("flaskr", "blue")),
        (f"{BASE}/other/shared/run/green.sock", ("other", "green")),
        (f"{BASE}/.shipyard/supervisor.sock", None),
        (f"{BASE}/flaskr/shared/run/blue.sock.keep", None),
        ("/elsewhere/flaskr/shared/run/blue.sock", None),
    ],
)
def test_socket_slot(path: str, where: tuple[str, str] | None) -> None:
    assert heal.socket_slot(BASE, path) == where


def test_every_action_says_what_was_done() -> None:
    for action in heal.decide(_world(supervisord=False), LIVE):
        assert action.describe()
