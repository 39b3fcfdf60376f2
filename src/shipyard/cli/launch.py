"""The `shipyard` program: a command goes to a warm server when one runs (cli/warm.py), else
it runs here and leaves a server behind for the next one.

This module is the whole of what a warm command imports in its own process, so it keeps to
a few modules of the standard library.
"""

from __future__ import annotations

import marshal
import os
import signal
import socket
import sys

from shipyard.residents import enabled, server_key, socket_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
ANSWER_TIMEOUT = 10.0  # seconds to wait for a server to fork the command


def main() -> None:
    code = attempt()
    if code is not None:
        sys.exit(code)
    from shipyard.cli.commands import main as run_here

    try:
        run_here(None)
    finally:
        start_server()


def socket_path() -> str | None:
    directory = socket_dir()
    if directory is None:
        return None
    key = server_key(sys.executable, sys.path, dict(os.environ))
    return os.path.join(directory, f"{key}.sock")


def attempt() -> int | None:
    """Run this process's command in a warm server: its exit code, or None when no server
    took it (none running, or stale) and the caller must run it itself."""
    if not enabled():
        return None
    path = socket_path()
    if path is None:
        return None
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:
        return None  # a closed standard descriptor cannot be handed over
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        return _handed_over(conn, path)
    except OSError:  # no server, or one too busy to answer: the command runs here
        return None
    except KeyboardInterrupt:  # before the child was let go: nothing ran
        return 130
    finally:
        conn.close()


def _handed_over(conn: socket.socket, path: str) -> int | None:
    conn.settimeout(5)
    conn.connect(path)
    conn.settimeout(ANSWER_TIMEOUT)
    messages = read_frames(conn)
    ready = next(messages, None)
    if ready is None or "ready" not in ready:
        return None  # stale, or gone
    socket.send_fds(conn, [frame(_request())], [0, 1, 2])
    forked = next(messages, None)
    if forked is None or "pid" not in forked:
        return None
    child = int(forked["pid"])
    _forward_signals(child)
    # The child waits for this before it starts: if this launcher gave up waiting for its
    # pid (and runs the command itself), the child sees the connection closed and exits.
    conn.sendall(frame({"go": True}))
    conn.settimeout(None)
    return _until_exit(messages)


def frame(message: dict[str, Any]) -> bytes:
    """One message on the wire: its length, then marshal's encoding of it. Both ends are the
    same interpreter (the socket's name says so) and the same user, and marshal is loaded
    with the interpreter while json would cost the launcher a tenth of its start-up."""
    data = marshal.dumps(message)
    return len(data).to_bytes(4, "big") + data


def read_frames(conn: socket.socket) -> Iterator[dict[str, Any]]:
    buffer = b""
    while True:
        while len(buffer) >= 4 and len(buffer) >= 4 + (size := int.from_bytes(buffer[:4], "big")):
            message = marshal.loads(buffer[4 : 4 + size])
            buffer = buffer[4 + size :]
            if not isinstance(message, dict):
                raise OSError("not a message")
            yield message
        chunk = conn.recv(65536)
        if not chunk:
            return
        buffer += chunk


def _request() -> dict[str, Any]:
    mask = os.umask(0o022)
    os.umask(mask)
    streams = (sys.stdin, sys.stdout, sys.stderr)
    request = {
        "argv": sys.argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "umask": mask,
        "stdio": [[s.encoding, s.errors] if s else ["utf-8", "strict"] for s in streams],
    }
    return request


def _forward_signals(child: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:  # noqa: SIM105 (contextlib is one more import)
            os.kill(child, signum)
        except OSError:
            pass

    def suspend(_signum: int, _frame: object) -> None:
        # Ctrl-Z: the command stops with the launcher, and goes on when the launcher does
        try:  # noqa: SIM105
            os.kill(child, signal.SIGSTOP)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGSTOP)

    for signum in (*FORWARDED, signal.SIGCONT):
        signal.signal(signum, forward)
    signal.signal(signal.SIGTSTP, suspend)


def _until_exit(messages: Iterator[dict[str, Any]]) -> int:
    """The child's exit code, as the server reports it; exec what the child handed back."""
    handed: dict[str, Any] | None = None
    for message in messages:
        if "exec" in message:
            handed = message
        elif "exit" in message:
            code = int(message["exit"])
            if handed is not None and code == 0:
                _exec(handed)
            return code
    return 1  # the server went away while the command ran: its end is unknown


def _exec(handed: dict[str, Any]) -> None:
    for signum in (*FORWARDED, signal.SIGCONT, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_DFL)
    argv = [str(arg) for arg in handed["exec"]]
    sys.stdout.flush()
    os.execvpe(argv[0], argv, {str(k): str(v) for k, v in handed["env"].items()})


def start_server() -> None:
    """Leave a server behind for the next command (it exits at once if one already runs)."""
    if not enabled():
        return
    path = socket_path()
    if path is None:
        return
    import subprocess

    code = "import sys; from shipyard.cli.warm import serve; serve(sys.argv[1], sys.argv[2:])"
    try:
        log = os.open(path[: -len(".sock")] + ".log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            subprocess.Popen(
                [sys.executable, "-c", code, path, *sys.path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            os.close(log)
    except OSError:
        pass  # only the next command's speed depends on it
