"""Venvs on the deploying machine with the app's pinned dependencies, from the wheel store:
the test gate's, and the build's (collectstatic). Made once per lock, Python and extras."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from shipyard.build.tools import fail, uv
from shipyard.host.artifact import wheel_store
from shipyard.host.python import PythonInfo
from shipyard.host.steps import Command, Connection

COMPLETE = ".complete.v2"  # v2: with bytecode


def env_key(lock: str, requirements: list[str], python: PythonInfo) -> str:
    digest = hashlib.sha256(f"{lock}\0{sorted(requirements)}".encode())
    digest.update(python.minor.encode())
    return digest.hexdigest()[:16]


def ensure_venv(
    conn: Connection,
    venv: Path,
    lock: str,
    python: PythonInfo,
    cache: Path,
    requirements: list[str],
    what: str,
) -> Path:
    """A venv at `venv` with the pins of `lock` and `requirements` installed; `what` names
    it in errors ("the test venv")."""
    complete = venv / COMPLETE
    if complete.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    created = conn.run(uv("venv", "--quiet", "--python", python.executable, str(venv)))
    if not created.ok:
        raise fail(created, f"cannot create {what}")
    pins = venv / "requirements.lock"
    pins.write_text(lock)
    installed = conn.run(
        uv(
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "--find-links",
            str(wheel_store(cache)),
            "-r",
            str(pins),
            *requirements,
        )
    )
    if not installed.ok:
        raise fail(installed, f"cannot install the requirements of {what}")
    # What runs there runs with PYTHONDONTWRITEBYTECODE (nothing lands in the project), so
    # the venv's own bytecode is made once here: it halves every later run.
    compiled = conn.run(
        Command((str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")))
    )
    if not compiled.ok:
        raise fail(compiled, f"cannot compile {what}")
    complete.touch()
    return venv
