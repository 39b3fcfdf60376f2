"""The build toolchain: uv, pip, and the Python the release runs on."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from shipyard.errors import BuildError
from shipyard.hosts.base import Command, Result


@cache
def uv_bin() -> str:
    """uv: the one a host's runtime keeps (SHIPYARD_UV), else the uv package beside shipyard."""
    if (given := os.environ.get("SHIPYARD_UV")) and os.access(given, os.X_OK):
        return given
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BuildError(
                "uv is not installed next to shipyard.",
                hint="Reinstall shipyard: pip install shipyard",
            ) from None
        return found


def uv_env() -> dict[str, str]:
    """Never let uv download a Python interpreter or ask for input."""
    return {"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}


def uv(*args: str, cwd: Path | None = None, timeout: float = 600) -> Command:
    return Command((uv_bin(), *args), cwd=str(cwd) if cwd else None, env=uv_env(), timeout=timeout)


@dataclass(frozen=True)
class PythonInfo:
    """The interpreter a release venv is made from."""

    executable: str
    version: str  # "3.11.2"

    @property
    def minor(self) -> str:
        return ".".join(self.version.split(".")[:2])

    @property
    def is_shipyards_own(self) -> bool:
        return self.minor == f"{sys.version_info.major}.{sys.version_info.minor}"


@cache
def find_python(wanted: str) -> PythonInfo:
    """Resolve the spec's `python` (empty, a version like '3.11', or a path) to an interpreter."""
    if not wanted:
        base = getattr(sys, "_base_executable", sys.executable)
        return PythonInfo(base, ".".join(map(str, sys.version_info[:3])))
    candidate = wanted if os.sep in wanted else shutil.which(f"python{wanted}") or ""
    if not candidate:
        raise BuildError(
            f"the spec asks for python {wanted!r}, which is not on PATH as python{wanted}.",
            hint=f"Install it ('apt-get install python{wanted}-venv') or set `python` to a path.",
        )
    try:
        proc = subprocess.run(
            [candidate, "-c", "import json,sys; print(json.dumps(list(sys.version_info[:3])))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as err:
        raise BuildError(f"cannot run the spec's python {candidate!r}: {err}.") from None
    return PythonInfo(candidate, ".".join(map(str, json.loads(proc.stdout))))


def fail(result: Result, what: str, hint: str | None = None) -> BuildError:
    return BuildError(
        f"{what} (exit {result.exit_code}): {result.command}\n{result.output_tail(40)}", hint=hint
    )
