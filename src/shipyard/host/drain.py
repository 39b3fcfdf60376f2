"""After a switch, what is still open on the old slot: waited for, or closed after its drain."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from shipyard.host.runtime import ReloadHandle

# How long nginx's old workers are waited for when the old slot holds nothing open through
# them (they may still be buffering a request body for it, or hold another app's WebSocket).
GRACE = 60.0
POLL = 0.02
LOOK_EVERY = 0.1  # reading the socket table costs more than asking for nginx's workers

_LISTENING = 0x10000  # __SO_ACCEPTCON in /proc/net/unix's Flags

Connections = Callable[[Path], int]


def count_connections(table: str, socket: str) -> int:
    """Connections accepted on the unix socket bound at `socket`, or waiting to be, in the
    text of /proc/net/unix: each shows the listener's path without its listening flag."""
    count = 0
    for line in table.splitlines()[1:]:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7] == socket and not int(fields[3], 16) & _LISTENING:
            count += 1
    return count


def open_connections(socket: Path) -> int:
    """Connections open on the app server listening at `socket` (this network namespace)."""
    try:
        table = Path("/proc/net/unix").read_text(errors="replace")
    except OSError:
        return 0  # unknown: the old workers are waited for, as when nothing is open
    return count_connections(table, str(socket))


def wait_old_slot(
    reload: ReloadHandle,
    socket: Path,
    drain: float,
    connections: Connections = open_connections,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Wait until nginx's old workers have finished everything they had, or until `drain`
    seconds have passed with connections still open on the old slot's `socket`.

    True in the second case: what is open there (WebSockets, or a request longer than the
    drain) is the old server's to close as it stops gracefully, a WebSocket with code 1012
    (service restart). An ordinary switch returns as soon as the old workers are gone.
    """
    start = clock()
    limit = start + max(drain, GRACE)
    next_look = start + drain
    while not reload.is_drained():
        now = clock()
        if now >= limit:
            return connections(socket) > 0
        if now >= next_look:
            if connections(socket) > 0:
                return True
            next_look = now + LOOK_EVERY
        sleep(POLL)
    return False
