"""The Python a release runs on, found on this machine (the deploying one, or a host)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

from shipyard.errors import BuildError

VERSION_RE = re.compile(r"\d+(\.\d+){0,2}")
RUN_TIMEOUT = 15.0
# Printed by a candidate asked who it is; runs on any Python, old or new.
_WHO = "import sys; print(sys.executable); print('%d.%d.%d' % tuple(sys.version_info[:3]))"


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


@dataclass(frozen=True)
class Places:
    """Where interpreters are looked for: PATH's dirs, the usual install dirs, and uv."""

    path: tuple[str, ...]
    dirs: tuple[str, ...] = ("/usr/bin", "/usr/local/bin")
    uv: str | None = None

    @classmethod
    def here(cls) -> Places:
        return cls(tuple(os.get_exec_path()), uv=find_uv())


@cache
def find_python(wanted: str) -> PythonInfo:
    """Resolve the spec's `python` (empty, a version like '3.11', or a path) to an interpreter."""
    if not wanted:
        base = getattr(sys, "_base_executable", sys.executable)
        return PythonInfo(base, ".".join(map(str, sys.version_info[:3])))
    return locate_python(wanted, Places.here())


def locate_python(wanted: str, places: Places) -> PythonInfo:
    """The first candidate for `wanted` that runs and is the version asked for.

    Each candidate is run, since a name on PATH proves nothing: a pyenv shim answers to every
    version and fails when the one asked for is not installed.
    """
    if os.sep in wanted:
        found = _run(wanted, None)
        if isinstance(found, PythonInfo):
            return found
        raise BuildError(
            f"the spec's python {wanted!r} does not run as a Python interpreter: {found}.",
            hint="Set `python` in the spec to a working interpreter's path, or to a version "
            "such as '3.12'.",
        )
    if not VERSION_RE.fullmatch(wanted):
        raise BuildError(
            f"the spec's python {wanted!r} is neither a version nor a path.",
            hint="Set `python` to a version such as '3.12', or to an interpreter's path.",
        )
    tried: list[str] = []
    for candidate in _candidates(wanted, places):
        problem = candidate.problem
        if candidate.path is not None:
            found = _run(candidate.path, wanted)
            if isinstance(found, PythonInfo):
                return found
            problem = found
        tried.append(f"{candidate.name} ({problem})")
    short = ".".join(wanted.split(".")[:2])
    raise BuildError(
        f"the spec asks for python {wanted!r}, and no working Python {wanted} was found. "
        f"Tried: {'; '.join(tried)}.",
        hint=f"Install it ('apt-get install python{short}-venv', or 'uv python install "
        f"{short}'), or set `python` in the spec to an interpreter's path.",
    )


class _Candidate(NamedTuple):
    name: str  # as the error lists it
    path: str | None  # None: there is none, for `problem`
    problem: str = ""


def _candidates(wanted: str, places: Places) -> Iterator[_Candidate]:
    """The interpreters that may be `wanted`, in the order they are tried, each path once."""
    short = ".".join(wanted.split(".")[:2])
    command = f"python{short}"
    seen: set[str] = set()

    def fresh(path: str) -> bool:
        new = path not in seen
        seen.add(path)
        return new

    on_path = False
    for directory in places.path:
        path = os.path.join(directory, command)
        if directory and _is_executable(path) and fresh(path):
            on_path = True
            yield _Candidate(path, path)
    if not on_path:
        yield _Candidate(f"{command} on PATH", None, "not found")
    for directory in places.dirs:
        path = os.path.join(directory, command)
        if fresh(path):
            yield _Candidate(path, path if _is_executable(path) else None, "not found")
    uv_name = f"uv python find {short}"
    if places.uv is None:
        yield _Candidate(uv_name, None, "uv not found")
    else:
        found, problem = _uv_find(places.uv, short)
        if found is None:
            yield _Candidate(uv_name, None, problem)
        elif fresh(found):
            yield _Candidate(f"{found}, from {uv_name}", found)
    python3 = shutil.which("python3", path=os.pathsep.join(places.path))
    if python3 is None:
        yield _Candidate("python3 on PATH", None, "not found")
    elif fresh(python3):
        yield _Candidate(python3, python3)


def _uv_find(uv: str, version: str) -> tuple[str | None, str]:
    """The uv-managed interpreter of `version`, or why there is none."""
    argv = [uv, "python", "find", "--managed-python", "--no-project", "--no-config", version]
    extra = {"UV_PYTHON_DOWNLOADS": "never", "NO_COLOR": "1"}
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            env={**os.environ, **extra},
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"did not answer within {RUN_TIMEOUT:g} s"
    except OSError as err:
        return None, err.strerror or type(err).__name__
    if proc.returncode != 0:
        return None, f"exit {proc.returncode}: {_first_line(proc.stderr or proc.stdout)}"
    lines = proc.stdout.strip().splitlines()
    return (lines[0], "") if lines else (None, "printed no path")


def _run(executable: str, wanted: str | None) -> PythonInfo | str:
    """The interpreter at `executable` if it runs (and is `wanted`), else why not."""
    try:
        proc = subprocess.run(
            [executable, "-E", "-c", _WHO],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"did not answer within {RUN_TIMEOUT:g} s"
    except OSError as err:
        return err.strerror or type(err).__name__
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {_first_line(proc.stderr or proc.stdout)}"
    lines = proc.stdout.strip().splitlines()
    if len(lines) != 2 or not VERSION_RE.fullmatch(lines[1]):
        return f"printed {proc.stdout.strip()[:80]!r}, not its version"
    reported, version = lines
    if wanted is not None and version.split(".")[: wanted.count(".") + 1] != wanted.split("."):
        return f"is Python {version}"
    # Its own idea of its path: the interpreter itself where `executable` is a shim.
    return PythonInfo(reported if os.path.isabs(reported) else executable, version)


def find_uv() -> str | None:
    """uv, if this machine has one: a host runtime's (SHIPYARD_UV), shipyard's, or PATH's.

    The one beside shipyard is where the uv package puts its binary (build/tools.py asks
    the package; host code must not import it).
    """
    if (given := os.environ.get("SHIPYARD_UV")) and os.access(given, os.X_OK):
        return given
    beside = os.path.join(sysconfig.get_path("scripts"), "uv")
    return beside if _is_executable(beside) else shutil.which("uv")


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else "no output"


def local_libc() -> str:
    """This machine's C library, as "glibc 2.36" ("" when it cannot be told)."""
    libc, version = platform.libc_ver()
    return f"{libc} {version}" if libc else ""
