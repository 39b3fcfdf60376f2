"""The Python a release runs on, found on this machine (the deploying one, or a host)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache

from shipyard.errors import BuildError


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


def local_libc() -> str:
    """This machine's C library, as "glibc 2.36" ("" when it cannot be told)."""
    libc, version = platform.libc_ver()
    return f"{libc} {version}" if libc else ""
