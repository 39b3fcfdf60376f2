"""A PEP 517 build backend kept imported in its build environment, forking a child per build.

Most of a small app's wheel build is the interpreter starting and importing the backend.
build/resident.py starts this script with the build environment's interpreter:

    python backend_server.py SOCKET BACKEND LINGER

It imports BACKEND once, then for each request forks a child that takes the caller's
working directory (the source copy), environment and umask, calls `build_wheel` as
pyproject_hooks' in-process script would, and answers with the wheel's name or the error,
with what the backend printed. Each build starts from the state the import left, never
from an earlier build's. Like the warm start's servers (cli/warm.py) it serves only its own
user, in a private directory, stops when a module it loaded changes on disk, and exits
after LINGER idle seconds. Standard library only: it runs in the build environment, where
shipyard is not installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
import traceback
from typing import Any

MAX_OUTPUT = 64 * 1024  # of what the backend printed, the end is kept


def main(argv: list[str]) -> None:
    path, backend_name, linger = argv[1], argv[2], float(argv[3])
    here = os.path.dirname(os.path.abspath(__file__))
    # this file's neighbours are shipyard's modules, not the backend's
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    lock = os.open(path.removesuffix(".sock") + ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    if not _locked(lock):
        return  # another server for this environment runs
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())  # who serves, for whoever must stop it
    backend = load_backend(backend_name)
    stamps = _stamps()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fresh = path + ".new"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(fresh)
    listener.bind(fresh)
    os.chmod(fresh, 0o600)
    listener.listen(8)
    os.rename(fresh, path)  # listening as it appears: a build never meets it half-made
    bound = os.stat(path).st_ino
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    idle_since = time.monotonic()
    try:
        while not stopping and time.monotonic() - idle_since < linger:
            if not selector.select(timeout=1.0):
                continue
            conn, _ = listener.accept()
            idle_since = time.monotonic()
            with conn:
                if not _same_user(conn):
                    continue
                if not _still_fresh(stamps):
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # no one else connects; the next server binds anew
                    _answer(conn, {"stale": True})
                    return
                if os.fork() == 0:
                    listener.close()
                    _build(conn, backend)  # never returns
    finally:
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == bound:  # not a newer server's socket
                os.unlink(path)
        listener.close()


def _locked(lock: int) -> bool:
    """The server's lock, waited for a moment: a stale server may still be exiting."""
    deadline = time.monotonic() + 5
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)


def load_backend(name: str) -> Any:
    """The backend object PEP 517 names as `module:object.attribute`."""
    module, _, attributes = name.partition(":")
    backend: Any = importlib.import_module(module)
    for attribute in filter(None, attributes.split(".")):
        backend = getattr(backend, attribute)
    return backend


def _build(conn: socket.socket, backend: Any) -> None:
    """In the child: one build, as the caller would have run it; then exit."""
    code = 0
    for taken in (signal.SIGCHLD, signal.SIGTERM):  # the backend's own subprocesses are its
        signal.signal(taken, signal.SIG_DFL)
    try:
        request = json.loads(_receive(conn))
        os.chdir(request["source"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(request["umask"])
        with tempfile.TemporaryFile() as output:
            for fd in (1, 2):
                os.dup2(output.fileno(), fd)
            try:
                reply: dict[str, Any] = {"name": backend.build_wheel(request["out"], None, None)}
            except BaseException:  # the backend's failure, the caller's to report
                reply = {"error": traceback.format_exc()}
            sys.stdout.flush()
            sys.stderr.flush()
            output.seek(max(0, os.fstat(output.fileno()).st_size - MAX_OUTPUT))
            reply["output"] = output.read().decode(errors="replace")
        _answer(conn, reply)
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _receive(conn: socket.socket) -> bytes:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(conn: socket.socket, reply: dict[str, Any]) -> None:
    conn.sendall(json.dumps(reply).encode())
    conn.shutdown(socket.SHUT_WR)


def _same_user(conn: socket.socket) -> bool:
    credentials = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", credentials)[1]
    return uid == os.geteuid()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def _stamps() -> dict[str, tuple[int, int]]:
    """The modification time and size of each loaded module's file."""
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    stamps = {}
    for name in files:
        if isinstance(name, str):
            with contextlib.suppress(OSError):
                info = os.stat(name)
                stamps[name] = (info.st_mtime_ns, info.st_size)
    return stamps


def _still_fresh(stamps: dict[str, tuple[int, int]]) -> bool:
    for name, stamp in stamps.items():
        try:
            info = os.stat(name)
        except OSError:
            return False
        if (info.st_mtime_ns, info.st_size) != stamp:
            return False
    return True


if __name__ == "__main__":
    main(sys.argv)
