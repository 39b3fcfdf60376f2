"""The app's wheel built by its build environment's resident backend (backend_server.py).

The first build in an environment starts the server and builds the usual way (a fresh
interpreter through pyproject_hooks); the next ones, while it runs, cost a fork instead of
an interpreter start and the backend's import. Whatever goes wrong with the server (none,
a stale one, no private socket directory) only means the usual way. SHIPYARD_WARM=0 turns
it off, as it does the warm start.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

from shipyard.residents import LINGER_VARIABLE, enabled, server_key, socket_dir

SERVER = Path(__file__).with_name("backend_server.py")
LINGER = 600.0  # seconds a server waits for the next build
MAX_SOCKET_PATH = 107
BUILD_TIMEOUT = 1800.0


class BackendFailed(Exception):
    """The backend raised: its traceback, and what it printed."""

    def __init__(self, error: str, output: str) -> None:
        super().__init__(error)
        self.error = error
        self.output = output


def build_wheel(env: Path, backend: str, source: Path, out: Path) -> str | None:
    """The name of the wheel the resident backend of `env` built from `source` into `out`;
    None when no server took the build (one is started for the next), and the caller
    builds it the usual way. Raises BackendFailed when the backend did."""
    path = _socket_path(env, backend)
    if path is None:
        return None
    try:
        reply = _ask(path, {"source": str(source), "out": str(out), "env": dict(os.environ)})
    except (OSError, ValueError):
        reply = {"stale": True}
    if reply.get("stale"):
        _start(env, backend, path)
        return None
    if "error" in reply:
        raise BackendFailed(str(reply["error"]), str(reply.get("output", "")))
    return str(reply["name"])


def _socket_path(env: Path, backend: str) -> str | None:
    if not enabled():
        return None
    directory = socket_dir()
    if directory is None:
        return None
    python = str(env / "bin" / "python")
    key = server_key(python, [backend, str(SERVER)], dict(os.environ))
    path = os.path.join(directory, f"build-{key}.sock")
    return path if len(path) <= MAX_SOCKET_PATH else None


def _ask(path: str, request: dict[str, Any]) -> dict[str, Any]:
    request["umask"] = _umask()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(BUILD_TIMEOUT)
        conn.connect(path)
        conn.sendall(json.dumps(request).encode())
        conn.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    reply = json.loads(b"".join(chunks))  # nothing (the server went away): ValueError
    if not isinstance(reply, dict):
        raise ValueError("not a reply")
    return reply


def _umask() -> int:
    """This process's umask, read without setting it (other threads create files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return 0o022


def _start(env: Path, backend: str, path: str) -> None:
    """Start the environment's server in the background, not as a child of this process
    (a shell starts it and exits): it takes no build before it has imported the backend and
    listens, and outlives this command."""
    linger = os.environ.get(LINGER_VARIABLE, str(LINGER))
    log = str(Path(path).with_suffix(".log"))
    python = str(env / "bin" / "python")
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        server = [python, str(SERVER), path, backend, linger]
        subprocess.run(
            ["/bin/sh", "-c", 'exec "$@" </dev/null >>"$0" 2>&1 &', log, *server],
            cwd="/",
            start_new_session=True,
            timeout=10,
            check=False,
        )
