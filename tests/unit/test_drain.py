"""The old slot's drain after a switch: connections read from /proc/net/unix, and how long the
wait lasts with nothing open, with WebSockets open, or with old workers held by another app."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shipyard.host import drain

SOCKET = "/srv/sy/chat/shared/run/blue.sock"

# /proc/net/unix with chat's blue server: its listener, two accepted connections (one of them
# still in the backlog), a connection to the green one, an unbound socket, and a path with a
# space
TABLE = f"""\
Num       RefCount Protocol Flags    Type St Inode Path
0000000031306a6c: 00000002 00000000 00010000 0001 01 97657 {SOCKET}
00000000da8e88ee: 00000003 00000000 00000000 0001 03 97669 {SOCKET}
00000000da8e88ef: 00000002 00000000 00000000 0001 02 97670 {SOCKET}
000000003139ef7b: 00000003 00000000 00000000 0001 03 97671 /srv/sy/chat/shared/run/green.sock
0000000047e5c4dc: 00000003 00000000 00000000 0001 03  1640
000000005c5889d6: 00000003 00000000 00000000 0001 03 97672 /srv/sy/my app/run/blue.sock
"""


def test_connections_on_a_socket_are_its_accepted_ones_not_its_listener() -> None:
    assert drain.count_connections(TABLE, SOCKET) == 2
    assert drain.count_connections(TABLE, "/srv/sy/chat/shared/run/green.sock") == 1
    assert drain.count_connections(TABLE, "/srv/sy/my app/run/blue.sock") == 1
    assert drain.count_connections(TABLE, "/srv/sy/other.sock") == 0
    assert drain.count_connections(TABLE.splitlines()[0], SOCKET) == 0


def test_an_unreadable_socket_table_counts_as_nothing_open(tmp_path: Path) -> None:
    assert drain.open_connections(tmp_path / "nobody-listens.sock") == 0


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class OldWorkers:
    """nginx's old workers, gone once the clock passes `exit_at`."""

    clock: Clock
    exit_at: float

    def wait_handed_over(self) -> None:
        raise AssertionError("not the drain's business")

    def wait_drained(self) -> None:
        raise AssertionError("the drain polls is_drained() on its own terms")

    def is_drained(self) -> bool:
        return self.clock.now >= self.exit_at


@dataclass
class Sockets:
    """The old slot's connections, and when each look at them was made."""

    clock: Clock
    open: int
    looks: list[float] = field(default_factory=list)

    def __call__(self, socket: Path) -> int:
        assert str(socket) == SOCKET
        self.looks.append(self.clock.now)
        return self.open


def _wait(exit_after: float, open_: int, drain_time: float) -> tuple[bool, float, list[float]]:
    """(the result, the seconds it waited, when it looked at the socket, from the start)."""
    clock = Clock()
    start = clock.now
    sockets = Sockets(clock, open_)
    result = drain.wait_old_slot(
        OldWorkers(clock, start + exit_after),
        Path(SOCKET),
        drain_time,
        sockets,
        clock=clock,
        sleep=clock.sleep,
    )
    return result, clock.now - start, [look - start for look in sockets.looks]


def test_an_ordinary_switch_ends_as_soon_as_the_old_workers_are_gone() -> None:
    result, waited, looks = _wait(exit_after=0.1, open_=0, drain_time=30)
    assert result is False
    assert waited < 0.2
    assert looks == []  # the socket table is not even read


def test_websockets_still_open_after_the_drain_time_stop_the_old_slot_then() -> None:
    result, waited, looks = _wait(exit_after=10_000, open_=2, drain_time=30)
    assert result is True
    assert 30 <= waited < 30.1
    assert looks and looks[0] >= 30  # nothing is cut before the drain time


def test_a_zero_drain_closes_open_websockets_at_once() -> None:
    result, waited, _ = _wait(exit_after=10_000, open_=1, drain_time=0)
    assert result is True
    assert waited < 0.1


def test_old_workers_held_by_something_else_are_waited_for_as_before() -> None:
    """Nothing open on the old slot, but the old workers stay (another app's WebSocket, a
    request body they still buffer for this one): waited for up to the grace, not cut."""
    result, waited, looks = _wait(exit_after=10_000, open_=0, drain_time=2)
    assert result is False
    assert drain.GRACE <= waited < drain.GRACE + 0.1
    assert looks[0] >= 2 and len(looks) > 100  # looked again and again, sparingly


def test_old_workers_that_finish_during_the_drain_end_it_early() -> None:
    result, waited, _ = _wait(exit_after=5, open_=1, drain_time=30)
    assert result is False
    assert 5 <= waited < 5.1


def test_a_drain_longer_than_the_grace_is_honoured() -> None:
    result, waited, _ = _wait(exit_after=10_000, open_=1, drain_time=300)
    assert result is True
    assert 300 <= waited < 300.1
