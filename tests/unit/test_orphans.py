"""Reading /proc: the parsers on captured text, and observe() and the handover on real processes
of this machine (a child holding a listening socket; nothing is mocked)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.host import handover, orphans, render, sockdiag
from shipyard.host.layout import HostLayout
from shipyard.host.orphans import Facts, Proc


def _tcp(*rows: tuple[str, str, str, int]) -> str:
    """/proc/net/tcp as the kernel writes it: (local, remote, state, inode) per socket."""
    head = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
    lines = [f"{head}  timeout inode"]
    for n, (local, remote, state, inode) in enumerate(rows):
        queues = "00000000:00000000 00:00000000 00000000"
        lines.append(f"{n:4}: {local} {remote} {state} {queues}     0        0 {inode} 1 0 100")
    return "\n".join(lines) + "\n"


TCP = _tcp(
    ("0100007F:1F90", "00000000:0000", "0A", 2124771),
    ("0100007F:8DCA", "0100007F:1F90", "01", 2124999),  # a connection, not a listener
    ("00000000:0050", "00000000:0000", "0A", 3000),
)
TCP6 = _tcp(("00000000000000000000000001000000:1F91", "0" * 32 + ":0000", "0A", 4000))
UNIX = """\
Num       RefCount Protocol Flags    Type St Inode Path
0000000057bae941: 00000002 00000000 00010000 0001 01 11365 /srv/sy/flaskr/shared/run/blue.sock
0000000057bae942: 00000003 00000000 00000000 0001 03 11366 /srv/sy/flaskr/shared/run/blue.sock
0000000057bae943: 00000002 00000000 00010000 0001 01 11367
0000000057bae944: 00000002 00000000 00010000 0001 01 11368 @abstract
"""


def test_tcp_listeners_are_the_listening_sockets_only() -> None:
    assert sockdiag.parse_proc_net_tcp(TCP) == [
        ("127.0.0.1", 8080, 2124771),
        ("0.0.0.0", 80, 3000),
    ]
    [(address, port, inode)] = sockdiag.parse_proc_net_tcp(TCP6)
    assert (port, inode) == (8081, 4000) and address == "[0000:0000:0000:0000:0000:0000:0000:0001]"


def test_unix_listeners_are_the_bound_listening_sockets() -> None:
    # an accepted connection carries the path too, but does not listen
    assert orphans.unix_listeners(UNIX) == [
        ("/srv/sy/flaskr/shared/run/blue.sock", 11365),
        ("@abstract", 11368),
    ]


def test_parse_stat_keeps_a_comm_with_spaces_and_parentheses() -> None:
    assert orphans.parse_stat("42 (a (b) c) S 7 42 42 0 -1") == ("a (b) c", 7)


def test_site_ports() -> None:
    confs = [
        "server {\n    listen 127.0.0.1:8080;\n    server_name x;\n}\n",
        "server {\n  listen 80;\n  listen [::]:8443 ssl;\n  # listen 9999;\n}\n",
    ]
    assert orphans.site_ports(confs) == {8080, 80, 8443}


def test_descends_follows_parents_and_stops_at_unknown_ones() -> None:
    procs = {
        3: Proc(3, 2, "nginx", "nginx: worker process"),
        2: Proc(2, 1, "nginx", "nginx: master process"),
        9: Proc(9, 8, "x", "x"),
    }
    facts = Facts(base=Path("/srv/sy"), procs=procs)
    assert facts.descends(3, 2) and facts.descends(2, 2)
    assert not facts.descends(3, 9) and not facts.descends(9, 2) and not facts.descends(3, None)
    assert facts.orphaned(9, 2) and not facts.orphaned(3, 2)
    assert not facts.orphaned(77, 2)  # not seen: not something to act on


@pytest.fixture
def listener() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """A child process holding a listening TCP socket on 127.0.0.1: (process, port, fd)."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(16)\n"
        "print(s.getsockname()[1], s.fileno(), flush=True); time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    port, fd = (int(x) for x in child.stdout.readline().split())
    try:
        yield child, port, fd
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_socket_taken_over_is_the_same_socket(
    listener: tuple[subprocess.Popen[str], int, int],
) -> None:
    child, port, fd = listener
    copy = handover.take_fd(child.pid, fd)
    with socket.socket(fileno=copy) as taken:
        assert taken.getsockname() == ("127.0.0.1", port)
        child.kill()
        child.wait()
        # the holder is gone and the port still accepts: the kernel socket lived on in ours
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = taken.accept()
            conn.close()


def test_observe_finds_who_holds_a_port_of_the_sites(
    tmp_path: Path, listener: tuple[subprocess.Popen[str], int, int]
) -> None:
    child, port, fd = listener
    host = HostLayout(tmp_path)
    host.nginx_sites.mkdir(parents=True)
    (host.nginx_sites / "app.conf").write_text(f"server {{\n    listen 127.0.0.1:{port};\n}}\n")

    class Down:
        def is_running(self) -> bool:
            return False

    facts = orphans.observe(host, Down())  # type: ignore[arg-type]
    assert facts.supervisord is None
    [held] = facts.ports
    assert held.address == f"127.0.0.1:{port}" and (child.pid, fd) in held.holders
    assert facts.procs[child.pid].ppid == os.getpid()


def test_nginx_starts_through_its_script_on_the_sockets_offered(
    tmp_path: Path, listener: tuple[subprocess.Popen[str], int, int]
) -> None:
    """The start script takes the offered sockets and names them in NGINX for what it execs
    (here a Python that reports them instead of nginx)."""
    child, port, fd = listener
    script = tmp_path / "nginx-start"
    script.write_bytes(render.nginx_start_script())
    offer_path = tmp_path / "handover.sock"
    report = (
        "import os, socket\n"
        "fd = int(os.environ['NGINX'].rstrip(';'))\n"
        "print(socket.socket(fileno=fd).getsockname()[1])\n"
    )
    argv = [sys.executable, "-I", "-S", str(script), str(offer_path), sys.executable, "-c"]
    with handover.taken(((child.pid, fd),)) as fds, handover.offered(offer_path, fds) as offer:
        assert offer_path.stat().st_mode & 0o077 == 0
        started = subprocess.run([*argv, report], capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == str(port) and offer.given == 1
    assert not offer_path.exists()
    # nothing offered: the program starts as it would have, with no NGINX variable
    alone = "import os; print(os.environ.get('NGINX'))"
    started = subprocess.run([*argv, alone], capture_output=True, text=True, timeout=30)
    assert started.returncode == 0 and started.stdout.strip() == "None", started.stderr
