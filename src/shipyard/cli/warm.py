"""Warm start: a resident process that has shipyard's modules loaded forks a child per command.

Most of a short command's time is Python importing shipyard, pydantic (building the spec's
models), jinja2 and rich (BENCHMARKS.md). After a command has run the usual way, the program
leaves a server behind that has imported all of them once; the next command's launcher
(cli/launch.py, standard library only) connects to it and hands over its argv, working
directory, environment, umask and its three standard descriptors (SCM_RIGHTS). The server
forks; the child becomes that command, in that directory with that environment, writing to
the caller's own terminal or pipes. The server reports the child's exit status, and the
launcher exits with it. Signals the launcher gets (Ctrl-C, SIGTERM, a closed terminal) are
passed on to the child.

It is a cache, so it must never change what a command does:
- the server serves only its own user (the socket sits in a 0700 directory of that user,
  and each peer's uid is checked);
- one server per interpreter and import path (the socket's name is a digest of both and of
  the interpreter's PYTHON* settings), so another venv or checkout never meets it;
- before each fork it checks that no module it has loaded changed on disk, nor any import
  directory; if one did, it says so and exits, and the launcher runs the command itself;
- it exits after LINGER idle seconds. SHIPYARD_WARM=0 turns it off.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import fcntl
import io
import marshal
import os
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shipyard.cli.launch import frame, read_frames
from shipyard.residents import LINGER_VARIABLE

LINGER = 600.0  # seconds a server waits for the next command
MAX_REQUEST = 1 << 20

_handover: socket.socket | None = None  # in a child: the launcher's connection


def hand_over(argv: list[str]) -> bool:
    """In a warm child, ask the launcher to exec `argv` itself (so that the command it runs
    is the launcher's own process: its terminal, its exit status); False elsewhere."""
    if _handover is None:
        return False
    _handover.sendall(frame({"exec": argv, "env": dict(os.environ)}))
    return True


# ---- the server's side ------------------------------------------------------------------


def serve(path_text: str, import_path: list[str]) -> None:
    """The server's main loop: preload, then fork a child per request until idle."""
    path = Path(path_text)
    sys.path[:] = import_path  # the launcher's, so that the socket's name holds for both
    lock = os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server is starting or running
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())  # who serves, for whoever must stop it
    with contextlib.suppress(OSError):  # the log (stderr, appended to) holds this server's only
        os.ftruncate(2, 0)
    if not _preload():
        return
    import gc

    gc.freeze()  # the children share the preloaded objects' pages instead of copying them
    stamps = _stamps()
    linger = float(os.environ.get(LINGER_VARIABLE, LINGER))
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    bound = os.stat(path).st_ino
    listener.listen(16)
    _log(f"serving on {path} (pid {os.getpid()})")
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, _stop)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    idle_since = time.monotonic()
    accepting = True

    def close() -> None:
        """Take no more commands; the ones running still get their exit reported."""
        nonlocal accepting
        if accepting:
            accepting = False
            selector.unregister(listener)
            listener.close()
            with contextlib.suppress(OSError):
                if os.stat(path).st_ino == bound:  # not a newer server's socket
                    path.unlink()

    try:
        while accepting or children:
            if accepting and (
                _stopping or (not children and time.monotonic() - idle_since > linger)
            ):
                close()
                continue
            for key, _events in selector.select(timeout=5.0):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    if not _still_fresh(stamps):
                        _send(conn, {"stale": True})
                        conn.close()
                        _log("code changed on disk; taking no more commands")
                        close()
                        continue
                    fds = (wake_read, wake_write, lock)
                    if pid := _fork_child(conn, listener, selector, fds):
                        children[pid] = conn
                else:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 512)
            _reap(children)
            if children:
                idle_since = time.monotonic()
    finally:
        close()
        _log("exiting")


_stopping = False


def _stop(_signum: int, _frame: object) -> None:
    global _stopping
    _stopping = True


def _preload() -> bool:
    """Import every module of shipyard (each command's code) and rich's console."""
    import importlib
    import pkgutil

    import shipyard

    names = [
        info.name
        for info in pkgutil.walk_packages(shipyard.__path__, "shipyard.")
        if not info.name.endswith("__main__")
    ]
    for name in [*names, "rich.console", "rich.markup", "rich.status", "rich.table"]:
        try:
            importlib.import_module(name)
        except Exception as err:  # a module that cannot load here is loaded by its command
            _log(f"not preloaded: {name}: {err}")
    from shipyard.host.render import compile_templates

    compile_templates()  # jinja2 compiles a template at its first use: in each command
    return "shipyard.cli.commands" in sys.modules


def _stamps() -> dict[str, tuple[int, int]]:
    """The modification time and size of each loaded module's file and of each import
    directory (a directory changes when a module is added to it or removed)."""
    files = {getattr(m, "__file__", None) for m in list(sys.modules.values())}
    paths = [f for f in files if isinstance(f, str)] + [p for p in sys.path if p]
    stamps: dict[str, tuple[int, int]] = {}
    for name in paths:
        try:
            info = os.stat(name)
        except OSError:
            continue
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


def _fork_child(
    conn: socket.socket,
    listener: socket.socket,
    selector: selectors.BaseSelector,
    server_fds: tuple[int, ...],
) -> int:
    """Receive a request and fork its child; 0 when the request was refused."""
    try:
        credentials = conn.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, array.array("i").itemsize * 3
        )
        uid = array.array("i", credentials)[1]
        if uid != os.geteuid():
            raise OSError(f"peer uid {uid} is not the server's")
        # the launcher hands its descriptors over only once it knows they are taken at
        # once: descriptors in flight to a stalled server would keep its pipes open
        _send(conn, {"ready": True})
        request, fds = _receive(conn)
    except (OSError, ValueError) as err:
        _log(f"refused a request: {err}")
        conn.close()
        return 0
    pid = os.fork()
    if pid == 0:
        selector.close()
        listener.close()
        for fd in server_fds:
            os.close(fd)
        _run_child(conn, request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    return pid


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    conn.settimeout(5)
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    if len(data) < 4:
        raise ValueError("request cut short")
    size = int.from_bytes(data[:4], "big")
    if size > MAX_REQUEST:
        raise ValueError("request too long")
    while len(data) < 4 + size:
        chunk = conn.recv(65536)
        if not chunk:
            raise ValueError("request cut short")
        data += chunk
    conn.settimeout(None)
    if len(fds) != 3:
        raise ValueError(f"{len(fds)} descriptors handed over, not 3")
    request = marshal.loads(data[4 : 4 + size])
    if not isinstance(request, dict):
        raise ValueError("request is not a message")
    return request, fds


def _reap(children: dict[int, socket.socket]) -> None:
    """Report each child that ended to its launcher: its exit code, 128 + the signal's
    number when a signal ended it (as a shell reports it)."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        _log(f"served pid {pid}: exit {code}")
        with contextlib.suppress(OSError):
            _send(conn, {"exit": code if code >= 0 else 128 - code})
        conn.close()


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(frame(message))


def _log(line: str) -> None:
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} warm: {line}\n")
    sys.stderr.flush()


def _run_child(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """Become the launcher's command, then exit with its code."""
    global _handover
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        _standard_streams(request["stdio"])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in request["env"].items()})
        os.umask(int(request["umask"]))
        time.tzset()  # the caller's TZ
        sys.argv = [str(arg) for arg in request["argv"]]
        _handover = conn
        if not _let_go(conn):  # the launcher gave up on us and runs the command itself
            os._exit(1)
        code = _main()
    except BaseException:  # the launcher sees exit 1; the reason goes to the caller's stderr
        import traceback

        with contextlib.suppress(Exception):
            traceback.print_exc()
    finally:
        _finish(code)


def _let_go(conn: socket.socket) -> bool:
    try:
        _send(conn, {"pid": os.getpid()})
        go = next(read_frames(conn), None)
    except OSError:
        return False
    return go is not None and "go" in go


def _standard_streams(stdio: list[list[str]]) -> None:
    """New sys.stdin/stdout/stderr over the handed descriptors, made as Python's start-up
    makes them for the launcher (buffering by terminal, the launcher's encodings)."""
    (in_enc, in_err), (out_enc, out_err), (err_enc, err_err) = stdio
    # they live as long as the process, as Python's own streams do
    sys.stdin = io.TextIOWrapper(open(0, "rb", closefd=False), in_enc, in_err)  # noqa: SIM115
    out_tty = os.isatty(1)
    sys.stdout = io.TextIOWrapper(
        open(1, "wb", closefd=False),  # noqa: SIM115
        out_enc,
        out_err,
        line_buffering=out_tty,
    )
    sys.stderr = io.TextIOWrapper(
        open(2, "wb", closefd=False),  # noqa: SIM115
        err_enc,
        err_err,
        line_buffering=True,
    )


def _main() -> int:
    from shipyard.cli.commands import main

    try:
        main(None)
    except SystemExit as exit_:
        return _exit_code(exit_.code)
    return 0


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _finish(code: int) -> None:
    """What the interpreter does at exit (join threads, exit handlers, flush), then exit
    without unwinding into the server's frames."""
    with contextlib.suppress(BaseException):
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
