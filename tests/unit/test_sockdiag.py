"""The listening TCP sockets from the kernel's sock_diag, checked against real sockets this test
opens and against /proc/net/tcp{,6}, the fallback that says the same (nothing is mocked)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.host import sockdiag


def _inode(sock: socket.socket) -> int:
    link = Path(f"/proc/self/fd/{sock.fileno()}").readlink()
    return int(str(link).removeprefix("socket:[").removesuffix("]"))


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    opened = []
    for family, address in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.bind((address, 0))
        sock.listen()
        opened.append(sock)
    connected = socket.create_connection(opened[0].getsockname()[:2])  # not a listener
    opened.append(connected)
    yield opened
    for sock in opened:
        sock.close()


def test_the_kernel_names_each_listener_with_its_port_and_inode(
    listeners: list[socket.socket],
) -> None:
    v4, v6, connected = listeners
    found = sockdiag.tcp_listening()
    assert ("127.0.0.1", v4.getsockname()[1], _inode(v4)) in found
    assert ("[" + "0000:" * 7 + "0001]", v6.getsockname()[1], _inode(v6)) in found
    assert _inode(connected) not in {inode for *_, inode in found}


def test_netlink_and_proc_net_tcp_agree(listeners: list[socket.socket]) -> None:
    from_proc = [
        entry
        for name in ("tcp", "tcp6")
        for entry in sockdiag.parse_proc_net_tcp(Path(f"/proc/net/{name}").read_text())
    ]
    assert sorted(sockdiag.tcp_listening()) == sorted(from_proc)


def test_without_netlink_proc_net_tcp_answers(
    listeners: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(family: int) -> list[tuple[str, int, int]]:
        raise PermissionError(13, "netlink refused by a sandbox")

    monkeypatch.setattr(sockdiag, "_dump", refused)
    assert ("127.0.0.1", listeners[0].getsockname()[1], _inode(listeners[0])) in (
        sockdiag.tcp_listening()
    )


def test_a_netlink_error_is_an_oserror_with_the_kernels_code() -> None:
    header = struct.pack("=IHHII", 16 + 4, sockdiag.NLMSG_ERROR, 0, 1, 0)
    with pytest.raises(OSError) as raised:
        sockdiag.parse_dump(header + struct.pack("=i", -22))
    assert raised.value.errno == 22


def test_a_dump_spread_over_datagrams_ends_at_done() -> None:
    done = struct.pack("=IHHII", 20, sockdiag.NLMSG_DONE, 2, 1, 0) + b"\0" * 4
    assert sockdiag.parse_dump(b"") == (False, [])
    assert sockdiag.parse_dump(done) == (True, [])
