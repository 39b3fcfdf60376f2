"""Listening sockets taken over from processes that hold them, and offered to the nginx that
starts next (its launcher, render/templates/nginx-start.py, asks for them on a unix socket).

nginx starts on inherited sockets (its NGINX environment variable, as in a binary upgrade)
without binding, so the port never closes: the same kernel socket, with its queue of
connections, passes from an orphaned nginx to the managed one. A copy of another process's
fd is taken with pidfd_getfd(2) (Linux 5.6), which needs the right to ptrace it: the same
user, or root.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

SYS_PIDFD_GETFD = 438  # the same number on every architecture (the unified syscall table)


def take_fd(pid: int, fd: int) -> int:
    """A copy, in this process, of `pid`'s file descriptor `fd`. OSError if not allowed."""
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        copy = int(libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0))
        if copy < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd of pid {pid}'s fd {fd}: {os.strerror(err)}")
        return copy
    finally:
        os.close(pidfd)


@contextlib.contextmanager
def taken(holders: tuple[tuple[int, int], ...]) -> Iterator[list[int]]:
    """Copies of the given (pid, fd)s, closed on exit (the sockets live on in their holders)."""
    fds: list[int] = []
    try:
        for pid, fd in holders:
            fds.append(take_fd(pid, fd))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


class Offer:
    """Hands `fds` to every launcher that connects to `path`, until closed."""

    def __init__(self, path: Path, fds: list[int]) -> None:
        self.path = path
        self.fds = fds
        self.given = 0
        path.unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)  # only shipyard's user (nginx's master) may ask
        try:
            self._server.bind(str(path))
        finally:
            os.umask(old)
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                try:
                    socket.send_fds(conn, [b"%d" % len(self.fds)], self.fds)
                    self.given += 1
                except OSError:
                    continue

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._server.close()
        self.path.unlink(missing_ok=True)


@contextlib.contextmanager
def offered(path: Path, fds: list[int]) -> Iterator[Offer]:
    offer = Offer(path, fds)
    try:
        yield offer
    finally:
        offer.close()
