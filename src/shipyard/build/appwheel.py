"""The app's own wheel, built through its PEP 517 backend in a cached build environment.

An isolated build (what `uv build` and `python -m build` do) makes a fresh environment each
time. The environment only depends on `[build-system]`, so shipyard keeps one per distinct
`requires` and calls the backend's hooks in it (pyproject_hooks, the library `build` uses):
a warm rebuild is the backend's own work and one interpreter start.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.build import resident
from shipyard.build.source import copy_files
from shipyard.build.tools import fail, uv
from shipyard.errors import BuildError
from shipyard.host.steps import Connection

if TYPE_CHECKING:
    from pyproject_hooks import BuildBackendHookCaller

# PEP 517's fallback for a project with no [build-system]
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
LEGACY_REQUIRES = ["setuptools>=40.8.0"]


def build_system(project: Path) -> tuple[list[str], str, list[str] | None]:
    """(requires, backend, backend-path) from pyproject.toml, with PEP 517's defaults."""
    pyproject = project / "pyproject.toml"
    try:
        table = tomllib.loads(pyproject.read_text()).get("build-system", {})
    except FileNotFoundError:
        table = {}
    except tomllib.TOMLDecodeError as err:
        raise BuildError(f"{pyproject} is not valid TOML: {err}.") from None
    requires = table.get("requires", LEGACY_REQUIRES)
    backend = table.get("build-backend", LEGACY_BACKEND)
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise BuildError(f"{pyproject}: [build-system] requires must be a list of strings.")
    return requires, str(backend), table.get("backend-path")


def build_env(conn: Connection, cache: Path, python: str, requires: list[str]) -> Path:
    """A venv with `requires` installed, made once per (requires, python)."""
    key = hashlib.sha256(json.dumps([sorted(requires), python]).encode()).hexdigest()[:16]
    env = cache / "buildenvs" / key
    if (env / ".complete").exists():
        return env
    made = conn.run(uv("venv", "--quiet", "--clear", "--python", python, str(env)))
    if not made.ok:
        raise fail(made, "cannot create the build environment")
    install(conn, env, requires)
    (env / ".complete").touch()
    return env


def install(conn: Connection, env: Path, requires: list[str]) -> None:
    if not requires:
        return
    args = ("pip", "install", "--quiet", "--python", str(env / "bin" / "python"), *requires)
    if conn.run(uv(*args[:2], "--offline", *args[2:])).ok:  # the usual case: all cached
        return
    online = conn.run(uv(*args))
    if not online.ok:
        raise fail(
            online,
            "cannot install the app's build requirements ([build-system] requires)",
            hint="They come from the package index the first time; check the network.",
        )


# What a backend's get_requires_for_build_wheel reads: its config, in these files.
BUILD_CONFIG_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def extra_build_requires(
    hooks: BuildBackendHookCaller,
    project: Path,
    env: Path,
    backend: str,
    backend_path: list[str] | None,
) -> list[str]:
    """The backend's extra build requirements, asked once per build config.

    Asking costs an interpreter start and the backend's import (about as much as the build
    itself for a small app), and the answer follows from the project's build config alone,
    for the backends in use (setuptools, hatchling, flit, poetry, pdm). An in-tree backend
    (backend-path) may compute it any way, so it is asked every time.
    """
    if backend_path:
        return list(hooks.get_requires_for_build_wheel())
    digest = hashlib.sha256(backend.encode())
    for name in BUILD_CONFIG_FILES:
        path = project / name
        digest.update(f"\0{name}\0".encode() + (path.read_bytes() if path.is_file() else b""))
    answer = env / "requires-for-wheel" / digest.hexdigest()[:24]
    try:
        cached = json.loads(answer.read_text())
        if isinstance(cached, list) and all(isinstance(r, str) for r in cached):
            return cached
    except (OSError, ValueError):
        pass
    extra = list(hooks.get_requires_for_build_wheel())
    answer.parent.mkdir(exist_ok=True)
    answer.write_text(json.dumps(extra))
    return extra


def build_wheel(
    conn: Connection, project: Path, files: Sequence[Path], out: Path, cache: Path, python: str
) -> Path:
    """Build the project's wheel into `out` and return it.

    The backend runs on a copy of the project's source `files`, so that what it writes
    (setuptools' build/ and *.egg-info/) never lands in the user's tree, and the wheel holds
    exactly the files the artifact id is a hash of.
    """
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".source-", dir=cache) as tmp:
        copy_files(project, files, Path(tmp))
        return _build_wheel(conn, project, Path(tmp), out, cache, python)


def _build_wheel(
    conn: Connection, project: Path, source: Path, out: Path, cache: Path, python: str
) -> Path:
    from pyproject_hooks import BuildBackendHookCaller, quiet_subprocess_runner  # builder only

    requires, backend, backend_path = build_system(project)
    env = build_env(conn, cache, python, requires)
    hooks = BuildBackendHookCaller(
        str(source),
        backend,
        backend_path=backend_path,
        python_executable=str(env / "bin" / "python"),
        runner=quiet_subprocess_runner,
    )
    out.mkdir(parents=True, exist_ok=True)
    hint = (
        "Check [build-system] in pyproject.toml and the files it packages. An app that is "
        "not meant to be a package deploys as its source tree with build.mode = 'tree'."
    )
    try:
        extra = extra_build_requires(hooks, source, env, backend, backend_path)
        missing = [r for r in extra if r not in requires]
        if missing:  # e.g. setuptools asks for "wheel": added to this environment once
            install(conn, env, missing)
        # an in-tree backend (backend-path) is imported from the source: none is resident
        name = None if backend_path else resident.build_wheel(env, backend, source, out)
        if name is None:
            name = hooks.build_wheel(str(out))
    except resident.BackendFailed as failed:
        raise _failed(project, backend, failed.output + failed.error, hint) from None
    except subprocess.CalledProcessError as err:
        output = (err.output or b"").decode(errors="replace")
        raise _failed(project, backend, output, hint) from None
    except Exception as err:  # the backend is missing or broken: pyproject_hooks' own errors
        raise BuildError(
            f"cannot build the app's wheel from {project} (backend {backend}): {err}.",
            hint=hint,
        ) from None
    wheel = out / name
    if not wheel.is_file():
        raise BuildError(f"the backend {backend} reported {name} but did not write it.")
    return wheel


def _failed(project: Path, backend: str, output: str, hint: str) -> BuildError:
    lines = output.strip().splitlines()[-40:]
    return BuildError(
        f"cannot build the app's wheel from {project} (backend {backend}):\n"
        + "\n".join(f"  | {line}" for line in lines),
        hint=hint,
    )
