"""Listening TCP sockets of this network namespace, asked of the kernel's sock_diag netlink
interface (what `ss -ltn` uses), with /proc/net/tcp{,6} as the fallback.

/proc/net/tcp lists every socket, the TIME_WAIT ones of a busy host included, and reading it
grows with them; sock_diag filters by state in the kernel and answers with the listeners only.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from pathlib import Path

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN = 10

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid (48 bytes)
_REQUEST = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans; sockid: sport and dport (network order), src
# (16), dst (16), interface, cookie (8); then expires, rqueue, wqueue, uid, inode
_MESSAGE = struct.Struct("=BBBBHH16s16sI8xIIIII")
_RECV_SIZE = 65536


def tcp_listening() -> list[tuple[str, int, int]]:
    """(address, port, inode) of each listening TCP socket, IPv4 then IPv6; an address is
    dotted (IPv4) or bracketed with eight groups of four hex digits (IPv6)."""
    try:
        return [entry for family in (socket.AF_INET, socket.AF_INET6) for entry in _dump(family)]
    except OSError:
        # no netlink here (a sandbox that forbids it): the kernel's text tables say the same
        return [
            entry
            for name in ("tcp", "tcp6")
            for entry in parse_proc_net_tcp(_read(Path(f"/proc/net/{name}")))
        ]


def _dump(family: int) -> list[tuple[str, int, int]]:
    request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 1 << TCP_LISTEN)
    header = _NLMSGHDR.pack(
        _NLMSGHDR.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
    )
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
        sock.sendall(header + request)
        found: list[tuple[str, int, int]] = []
        while True:
            done, entries = parse_dump(sock.recv(_RECV_SIZE))
            found += entries
            if done:
                return found


def parse_dump(data: bytes) -> tuple[bool, list[tuple[str, int, int]]]:
    """The listeners in one datagram of a sock_diag dump, and whether the dump is over."""
    found: list[tuple[str, int, int]] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _, _, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            raise OSError(errno.EPROTO, "malformed netlink message")
        body = offset + _NLMSGHDR.size
        if kind == NLMSG_DONE:
            return True, found
        if kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, body)[0]
            raise OSError(code, os.strerror(code))
        if kind == SOCK_DIAG_BY_FAMILY:
            found.append(_listener(data, body))
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return False, found


def _listener(data: bytes, at: int) -> tuple[str, int, int]:
    family, _, _, _, sport, _, src, _, _, _, _, _, _, inode = _MESSAGE.unpack_from(data, at)
    port = socket.ntohs(sport)
    if family == socket.AF_INET:
        return str(ipaddress.IPv4Address(src[:4])), port, inode
    return "[" + ipaddress.IPv6Address(src).exploded + "]", port, inode


def parse_proc_net_tcp(text: str) -> list[tuple[str, int, int]]:
    """(address, port, inode) of each listening socket in /proc/net/tcp or tcp6."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # TCP_LISTEN, in hex
            continue
        address, _, port = fields[1].partition(":")
        found.append((_hex_ip(address), int(port, 16), int(fields[9])))
    return found


def _hex_ip(hex_address: str) -> str:
    """/proc/net/tcp's address: the kernel's words in host (little-endian) order."""
    if len(hex_address) == 8:
        return ".".join(str(b) for b in reversed(bytes.fromhex(hex_address)))
    words = [bytes.fromhex(hex_address[i : i + 8])[::-1].hex() for i in range(0, 32, 8)]
    return "[" + ":".join(w[i : i + 4] for w in words for i in (0, 4)) + "]"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
