"""Health polling with a deadline: through a unix socket before the switch, through nginx after."""

from __future__ import annotations

import http.client
import socket as stdsocket
import ssl
import struct
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shipyard.spec.model import HealthcheckSpec

POLL_INTERVAL = 0.03
GIVE_UP_INTERVAL = 0.2
PROBE_TIMEOUT = 5.0
# When a wait_until runs, when it ends: no probe inside it may outlast it (a hung app would
# otherwise stretch the wait by a probe's timeout). A context variable: the resident agent
# serves sessions in threads.
_DEADLINE: ContextVar[float | None] = ContextVar("health_deadline", default=None)


def _probe_timeout() -> float:
    deadline = _DEADLINE.get()
    if deadline is None:
        return PROBE_TIMEOUT
    return max(0.05, min(PROBE_TIMEOUT, deadline - time.monotonic()))


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str
    release: str | None = None
    # what recovery asks nginx (recovery.observe); a verdict's equality does not include them
    slot: str | None = field(default=None, compare=False)  # X-Shipyard-Slot, through nginx
    status: int | None = field(default=None, compare=False)  # None: no HTTP answer at all


@dataclass(frozen=True)
class Healthy:
    """The HTTP statuses that count as healthy: those listed, or (None) any below 500.

    A server error means the app is broken; any other answer, a 404 included, proves it
    loaded and routes requests, which is all the default check can ask of an app whose
    routes it does not know.
    """

    statuses: tuple[int, ...] | None = None

    @classmethod
    def of(cls, check: HealthcheckSpec) -> Healthy:
        return cls(check.healthy_statuses)

    def accepts(self, status: int) -> bool:
        return status < 500 if self.statuses is None else status in self.statuses

    def __str__(self) -> str:
        return "below 500" if self.statuses is None else str(list(self.statuses))

    def judge(self, status: int, release: str | None = None, slot: str | None = None) -> Probe:
        if self.accepts(status):
            return Probe(True, f"HTTP {status}", release, slot, status)
        return Probe(False, f"HTTP {status} (healthy is {self})", release, slot, status)


def probe_socket(socket: Path, path: str, host_header: str, healthy: Healthy) -> Probe:
    if not socket.is_socket():
        return Probe(False, f"{socket} is not bound yet")
    return _probe(_UnixConnection(str(socket)), path, host_header, healthy)


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over a unix socket: the stdlib client (the agent starts fast without httpx)."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=_probe_timeout())
        self.unix_path = path

    def connect(self) -> None:
        sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def probe_uwsgi_socket(socket: Path, path: str, host_header: str, healthy: Healthy) -> Probe:
    """A GET in the uwsgi protocol, which uWSGI speaks on its socket (and nginx's uwsgi_pass)."""
    if not socket.is_socket():
        return Probe(False, f"{socket} is not bound yet")
    params = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": path.split("?", 1)[0],
        "QUERY_STRING": path.split("?", 1)[1] if "?" in path else "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": host_header,
        "SERVER_PORT": "80",
        "HTTP_HOST": host_header,
        "REMOTE_ADDR": "127.0.0.1",
    }
    body = b"".join(
        struct.pack("<H", len(k)) + k.encode() + struct.pack("<H", len(v)) + v.encode()
        for k, v in params.items()
    )
    try:
        with stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM) as conn:
            conn.settimeout(_probe_timeout())
            conn.connect(str(socket))
            conn.sendall(struct.pack("<BHB", 0, len(body), 0) + body)
            head = conn.recv(4096).decode("latin-1")
    except OSError as err:
        return Probe(False, f"{type(err).__name__}: {err}")
    parts = head.split(" ", 2)
    if len(parts) < 2 or not parts[1][:3].isdigit():
        return Probe(False, f"not an HTTP answer: {head[:60]!r}")
    return healthy.judge(int(parts[1][:3]))


def probe_url(url: str, host_header: str, healthy: Healthy) -> Probe:
    """GET `url` from nginx; an https one unverified: it asks this host's own nginx by
    address, and what it checks is which release answers, not the certificate."""
    parts = urlsplit(url)
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            parts.hostname or "127.0.0.1",
            parts.port or 443,
            timeout=_probe_timeout(),
            context=context,
        )
    else:
        conn = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port or 80, timeout=_probe_timeout()
        )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _probe(conn, target, host_header, healthy)


def _probe(
    conn: http.client.HTTPConnection, path: str, host_header: str, healthy: Healthy
) -> Probe:
    try:
        conn.request("GET", path, headers={"Host": host_header, "Connection": "close"})
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as err:
        return Probe(False, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
    finally:
        conn.close()
    return healthy.judge(
        response.status,
        response.getheader("X-Shipyard-Release"),
        response.getheader("X-Shipyard-Slot"),
    )


def wait_until(
    check: Callable[[], Probe], timeout: float, give_up: Callable[[], str | None] | None = None
) -> Probe:
    """Poll `check` until it passes or `timeout` passes; `give_up` may end the wait early.

    `give_up` (a question to supervisord: has the server died?) is asked every
    GIVE_UP_INTERVAL only: a booting server takes longer on a busy host, and asking at every
    poll would make the wait cost more CPU exactly when it is scarcest.
    """
    deadline = time.monotonic() + timeout
    token = _DEADLINE.set(deadline)
    try:
        return _poll(check, timeout, deadline, give_up)
    finally:
        _DEADLINE.reset(token)


def _poll(
    check: Callable[[], Probe],
    timeout: float,
    deadline: float,
    give_up: Callable[[], str | None] | None,
) -> Probe:
    last = Probe(False, "not checked yet")
    next_give_up = time.monotonic()
    while True:
        last = check()
        if last.ok:
            return last
        if give_up is not None and time.monotonic() >= next_give_up:
            next_give_up = time.monotonic() + GIVE_UP_INTERVAL
            if reason := give_up():
                return Probe(False, reason)
        if time.monotonic() >= deadline:
            return Probe(False, f"no healthy answer within {timeout:g} s; last: {last.detail}")
        time.sleep(POLL_INTERVAL)
