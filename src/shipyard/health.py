"""Health polling with a deadline: through a unix socket before the switch, through nginx after."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

POLL_INTERVAL = 0.03


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str
    release: str | None = None


def probe_socket(socket: Path, path: str, host_header: str, statuses: list[int]) -> Probe:
    transport = httpx.HTTPTransport(uds=str(socket))
    return _probe(transport, f"http://localhost{path}", host_header, statuses)


def probe_url(url: str, host_header: str, statuses: list[int]) -> Probe:
    return _probe(httpx.HTTPTransport(), url, host_header, statuses)


def _probe(
    transport: httpx.HTTPTransport, url: str, host_header: str, statuses: list[int]
) -> Probe:
    try:
        with httpx.Client(transport=transport, timeout=5.0) as client:
            response = client.get(url, headers={"Host": host_header})
    except httpx.HTTPError as err:
        return Probe(False, f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)
    release = response.headers.get("x-shipyard-release")
    if response.status_code in statuses:
        return Probe(True, f"HTTP {response.status_code}", release)
    return Probe(False, f"HTTP {response.status_code} (healthy is {statuses})", release)


def wait_until(
    check: Callable[[], Probe], timeout: float, give_up: Callable[[], str | None] | None = None
) -> Probe:
    """Poll `check` until it passes or `timeout` passes; `give_up` may end the wait early."""
    deadline = time.monotonic() + timeout
    last = Probe(False, "not checked yet")
    while True:
        last = check()
        if last.ok:
            return last
        if give_up is not None and (reason := give_up()):
            return Probe(False, reason)
        if time.monotonic() >= deadline:
            return Probe(False, f"no healthy answer within {timeout:g} s; last: {last.detail}")
        time.sleep(POLL_INTERVAL)
