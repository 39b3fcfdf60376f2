"""The agent stays resident on a host for a while after a session, so the next one starts warm.

Starting the agent costs a host CPU, mostly importing shipyard and pydantic (BENCHMARKS.md);
a deploy is a burst of sessions (provision, deploy, status, logs, rollback), so the cost is
paid once per burst instead of once per command:

- a session opens with RELAY, a few lines of plain Python that connect to the host's agent
  socket and pass the session through; when no resident agent answers, or it runs other code
  than the deploying machine expects, the relay execs the full agent instead;
- a full agent, once its session ended, forks: the parent exits (ending the ssh command) and
  the child stays resident, serving sessions on the socket, each in a thread, until it has
  been idle for LINGER seconds or its code or runtime changed on disk.

The socket is the host user's own (0600) and sits in the runtime's directory: only whoever may
run the agent anyway (root, or the login user through sudo) can reach it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

LINGER = 600.0  # seconds a resident agent waits for the next session
SOCKET_NAME = "agent.sock"
LOCK_NAME = "agent.lock"

# The session command on the host: `python -I -S -c RELAY SOCKET HEADER AGENT_ARGV...`.
# It imports only what it needs (-S: no site), and falls back to exec'ing the full agent.
RELAY = """\
import os, socket, sys, threading
path, header, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
s = socket.socket(socket.AF_UNIX)
answer = b""
try:
    s.settimeout(10)
    s.connect(path)
    s.sendall(header.encode() + b"\\n")
    while not answer.endswith(b"\\n") and len(answer) < 64:
        byte = s.recv(1)
        if not byte:
            break
        answer += byte
    s.settimeout(None)
except OSError:
    answer = b""
if answer != b"ready\\n":
    s.close()
    os.execv(argv[0], argv)
def up():
    try:
        while data := os.read(0, 65536):
            s.sendall(data)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        os._exit(1)
threading.Thread(target=up, daemon=True).start()
while data := s.recv(65536):
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
os._exit(0)
"""


def session_header(
    base: str,
    listen: str,
    app_user: str,
    nginx: str,
    expect_lib: str,
    process_manager: str = "supervisor",
) -> str:
    return json.dumps(
        {
            "base": base,
            "listen": listen,
            "app_user": app_user,
            "nginx": nginx,
            "expect_lib": expect_lib,
            "process_manager": process_manager,
        },
        separators=(",", ":"),
    )


# (header, reader, writer, ready): checks what it needs, calls ready() (the relay then passes
# the session through) and serves; returning without ready() makes the relay run a full agent.
SessionRunner = Callable[[dict[str, Any], IO[bytes], IO[bytes], Callable[[], None]], None]


class Resident:
    """A resident agent: accepts sessions on its socket until idle or out of date."""

    def __init__(
        self,
        linger: float,
        loaded: tuple[str, str],
        marks: Callable[[], tuple[str, str]],
        run: SessionRunner,
    ) -> None:
        self.linger = linger
        self.loaded = loaded  # the code this process runs, as read when it started
        self.marks = marks  # the code on disk now
        self.run = run
        self.active = 0
        self.last_seen = time.monotonic()
        self.retiring = False
        self.guard = threading.Lock()
        self.wake_up, self.wake_up_writer = os.pipe()

    def serve(self, listener: socket.socket, path: Path) -> None:
        listener.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(self.wake_up, selectors.EVENT_READ)
            while not self.retiring:
                with self.guard:
                    if self.active == 0 and time.monotonic() - self.last_seen > self.linger:
                        break
                if not selector.select(timeout=5.0):
                    continue
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # woken up to retire, or another accept won the race
                conn.setblocking(True)
                with self.guard:
                    self.active += 1
                threading.Thread(target=self._session, args=(conn,), daemon=True).start()
        # No new sessions from here on: gone from the socket at once, so that a relay runs a
        # full agent instead of waiting; the sessions under way finish. (Ours to remove: a
        # successor binds only once it holds the lock this process still holds.)
        path.unlink(missing_ok=True)
        listener.close()
        while self.active:
            time.sleep(0.2)

    def _retire(self) -> None:
        _log("retiring: the deploying machine runs other code (a new agent takes over)")
        self.retiring = True
        os.write(self.wake_up_writer, b"x")

    def _session(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        writer = conn.makefile("wb")
        try:
            header: dict[str, Any] = json.loads(reader.readline() or b"{}")
            if self.marks() != self.loaded or header.get("expect_lib") != self.loaded[0]:
                self._retire()
                return

            def ready() -> None:
                writer.write(b"ready\n")
                writer.flush()
                _log(f"session for {header.get('base')} (as {header.get('app_user') or '-'})")

            self.run(header, reader, writer, ready)
        except (OSError, ValueError):
            pass
        finally:
            # The fd closes with the last of them: the relay must see the end now.
            for closing in (writer.close, reader.close, lambda: conn.shutdown(socket.SHUT_RDWR)):
                with contextlib.suppress(OSError):
                    closing()
            conn.close()
            with self.guard:
                self.active -= 1
                self.last_seen = time.monotonic()


def stay_resident(
    runtime: Path,
    linger: float,
    loaded: tuple[str, str],
    marks: Callable[[], tuple[str, str]],
    run: SessionRunner,
) -> None:
    """Called by a full agent whose session ended: fork, and let the child stay resident.

    The parent returns at once (its ssh command ends); the child detaches from the session and
    serves on the runtime's socket, unless another resident agent already does.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return
    try:
        os.setsid()
        _detach_stdio(runtime / "logs" / "agent.log")
        lock = os.open(runtime / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os._exit(0)  # another one is resident
        path = runtime / SOCKET_NAME
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(path))
        finally:
            os.umask(old_umask)
        listener.listen(16)
        resident = Resident(linger, loaded, marks, run)
        _log(f"resident, pid {os.getpid()}, for up to {linger:g} s idle")
        resident.serve(listener, path)
        _log("exiting")
    except BaseException:  # a resident agent is an optimisation: never let it linger broken
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _log(line: str) -> None:
    print(time.strftime("%Y-%m-%d %H:%M:%S"), "agent:", line, flush=True)


def _detach_stdio(log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)
