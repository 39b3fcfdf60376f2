"""Health probes and the polling deadline."""

from __future__ import annotations

import http.server
import socket
import socketserver
import struct
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from shipyard.host import health
from shipyard.spec.model import STRICT_STATUSES, HealthcheckSpec

DEFAULT = health.Healthy.of(HealthcheckSpec())
STRICT = health.Healthy.of(HealthcheckSpec(path="/health"))


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
        probe = health.probe_uwsgi_socket(path, "/health?x=1", "example.com", STRICT)
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
        probe = health.probe_uwsgi_socket(path, "/", "localhost", DEFAULT)
        thread.join(5)
    assert not probe.ok and probe.detail == "HTTP 500 (healthy is below 500)"


def test_probe_of_a_missing_socket_fails_without_raising(tmp_path: Path) -> None:
    assert not health.probe_socket(tmp_path / "none.sock", "/", "localhost", DEFAULT).ok
    assert not health.probe_uwsgi_socket(tmp_path / "none.sock", "/", "localhost", DEFAULT).ok


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


def test_the_default_check_asks_for_slash_and_takes_any_status_below_500() -> None:
    check = HealthcheckSpec()
    assert check.request_path == "/" and check.healthy_statuses is None
    assert all(DEFAULT.accepts(status) for status in (200, 204, 302, 401, 403, 404, 499))
    assert not any(DEFAULT.accepts(status) for status in (500, 502, 503, 504))


@pytest.mark.parametrize(
    ("fields", "statuses"),
    [
        ({"path": "/health"}, STRICT_STATUSES),
        ({"path": "/"}, STRICT_STATUSES),  # set explicitly, even to the default's path
        ({"status": [200]}, (200,)),
        ({"path": "/up", "status": [204]}, (204,)),
    ],
)
def test_a_path_or_statuses_set_in_the_spec_make_the_check_strict(
    fields: dict[str, object], statuses: tuple[int, ...]
) -> None:
    check = HealthcheckSpec.model_validate(fields)
    assert check.healthy_statuses == statuses
    assert not health.Healthy.of(check).accepts(404)


def test_the_default_survives_the_releases_stored_spec() -> None:
    """A release's spec is read back from its JSON: the default must still be the default."""
    for check in (HealthcheckSpec(), HealthcheckSpec(path="/health")):
        again = HealthcheckSpec.model_validate_json(check.model_dump_json())
        assert again.healthy_statuses == check.healthy_statuses


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("X-Shipyard-Release", "r2")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def _handler(answer: int) -> type[_Handler]:
    class Handler(_Handler):
        status = answer

    return Handler


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def _app_answering(status: int) -> Iterator[Path]:
    """An HTTP server on a unix socket that answers every GET with `status`."""
    handler = _handler(status)
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "app.sock"
        with _UnixHTTPServer(str(path), handler) as server:
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield path
            finally:
                server.shutdown()


@pytest.mark.parametrize(
    ("status", "healthy", "ok", "detail"),
    [
        (404, DEFAULT, True, "HTTP 404"),
        (302, DEFAULT, True, "HTTP 302"),
        (500, DEFAULT, False, "HTTP 500 (healthy is below 500)"),
        (503, DEFAULT, False, "HTTP 503 (healthy is below 500)"),
        (200, STRICT, True, "HTTP 200"),
        (404, STRICT, False, f"HTTP 404 (healthy is {list(STRICT_STATUSES)})"),
    ],
)
def test_a_socket_probe_judges_the_apps_answer(
    status: int, healthy: health.Healthy, ok: bool, detail: str
) -> None:
    with _app_answering(status) as path:
        probe = health.probe_socket(path, "/", "localhost", healthy)
    assert (probe.ok, probe.detail, probe.release) == (ok, detail, "r2")


def test_a_refused_connection_is_not_healthy() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        path = Path(tmp) / "dead.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
            dead.bind(str(path))  # bound, never listening: what a dead server leaves behind
            probe = health.probe_socket(path, "/", "localhost", DEFAULT)
    assert not probe.ok and probe.detail.startswith("ConnectionRefusedError")


def test_a_url_probe_takes_a_404_with_the_release_header_by_default() -> None:
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(404)) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}/"
            default = health.probe_url(url, "localhost", DEFAULT)
            strict = health.probe_url(url, "localhost", STRICT)
        finally:
            server.shutdown()
    assert (default.ok, default.release) == (True, "r2")
    assert not strict.ok and strict.detail.startswith("HTTP 404 (healthy is [200")


def test_wait_until_retries_server_errors_until_the_deadline() -> None:
    answers = iter([DEFAULT.judge(503), DEFAULT.judge(500), DEFAULT.judge(404)])
    assert health.wait_until(lambda: next(answers), 5).detail == "HTTP 404"
    last = health.wait_until(lambda: DEFAULT.judge(500), 0.05)
    assert not last.ok
    assert last.detail == "no healthy answer within 0.05 s; last: HTTP 500 (healthy is below 500)"


def test_a_hung_app_does_not_stretch_the_wait_past_its_timeout(tmp_path: Path) -> None:
    """A server that accepts and never answers: each probe would wait PROBE_TIMEOUT; inside a
    wait, none outlasts the wait's own timeout, so the message's figure holds."""
    import socket as stdsocket
    import time

    from shipyard.host import health

    path = tmp_path / "hung.sock"
    with stdsocket.socket(stdsocket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(8)
        healthy = health.Healthy.of(HealthcheckSpec())
        started = time.monotonic()
        probe = health.wait_until(
            lambda: health.probe_socket(path, "/", "localhost", healthy), timeout=0.5
        )
        waited = time.monotonic() - started
    assert not probe.ok and "within 0.5 s" in probe.detail
    assert waited < health.PROBE_TIMEOUT  # one hung probe alone would take that long
