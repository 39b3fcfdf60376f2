"""Health probes and the polling deadline."""

from __future__ import annotations

import socket
import struct
import tempfile
import threading
from pathlib import Path

from shipyard.host import health


def _serve_once(path: Path, reply: bytes, seen: dict[str, str]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def handle() -> None:
        conn, _ = server.accept()
        with conn, server:
            _, size, _ = struct.unpack("<BHB", conn.recv(4))
            data = b""
            while len(data) < size:
                data += conn.recv(size - len(data))
            pos = 0
            while pos < size:
                (klen,) = struct.unpack_from("<H", data, pos)
                key = data[pos + 2 : pos + 2 + klen].decode()
                pos += 2 + klen
                (vlen,) = struct.unpack_from("<H", data, pos)
                seen[key] = data[pos + 2 : pos + 2 + vlen].decode()
                pos += 2 + vlen
            conn.sendall(reply)

    thread = threading.Thread(target=handle, daemon=True)
    thread.start()
    return thread


def test_uwsgi_probe_speaks_the_uwsgi_protocol() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "u.sock"
        seen: dict[str, str] = {}
        thread = _serve_once(path, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", seen)
        probe = health.probe_uwsgi_socket(path, "/health?x=1", "example.com", [200])
        thread.join(5)
    assert probe.ok, probe.detail
    assert seen["REQUEST_METHOD"] == "GET"
    assert seen["PATH_INFO"] == "/health"
    assert seen["QUERY_STRING"] == "x=1"
    assert seen["HTTP_HOST"] == "example.com"


def test_uwsgi_probe_reports_an_unhealthy_status() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "u.sock"
        thread = _serve_once(path, b"HTTP/1.1 500 Internal Server Error\r\n\r\n", {})
        probe = health.probe_uwsgi_socket(path, "/", "localhost", [200])
        thread.join(5)
    assert not probe.ok and "HTTP 500" in probe.detail


def test_probe_of_a_missing_socket_fails_without_raising(tmp_path: Path) -> None:
    assert not health.probe_socket(tmp_path / "none.sock", "/", "localhost", [200]).ok
    assert not health.probe_uwsgi_socket(tmp_path / "none.sock", "/", "localhost", [200]).ok


def test_wait_until_stops_early_when_told_to_give_up() -> None:
    calls: list[int] = []

    def check() -> health.Probe:
        calls.append(1)
        return health.Probe(False, "down")

    asked: list[int] = []

    def give_up() -> str | None:
        asked.append(1)
        return "exited" if len(asked) >= 3 else None

    probe = health.wait_until(check, 30, give_up=give_up)
    assert not probe.ok and probe.detail == "exited" and len(asked) == 3
    # asked every GIVE_UP_INTERVAL, not at every poll: polls go on in between
    assert len(calls) >= 2 * len(asked)


def test_wait_until_returns_the_first_pass() -> None:
    answers = iter([health.Probe(False, "no"), health.Probe(True, "HTTP 200")])
    assert health.wait_until(lambda: next(answers), 5).detail == "HTTP 200"
