"""Bytecode for a release: which of its files lack it, and compiling the few that do.

A release's dependencies are a layer whose bytecode came with the wheels (bytecode_bundle.py),
so a code-only release has only the app's own modules to compile: a handful, compiled in the
installer's own process when it is the venv's Python.
"""

from __future__ import annotations

import os
import py_compile
import sys
from collections.abc import Sequence
from pathlib import Path

from shipyard.errors import DeployError


def site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    return found[0] if found else None


def cache_tag(site: Path) -> str:
    """The .pyc tag of the Python a site-packages belongs to: lib/python3.11 -> cpython-311."""
    return "cpython-" + site.parent.name.removeprefix("python").replace(".", "")


def without_bytecode(venv: Path) -> list[Path] | None:
    """The venv's .py files that have no .pyc for its Python; None if that cannot be told."""
    site = site_packages(venv)
    if site is None:
        return None
    tag = cache_tag(site)
    missing = []
    for directory, dirs, files in os.walk(site):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        sources = [name for name in files if name.endswith(".py")]
        if not sources:
            continue
        try:
            compiled = set(os.listdir(os.path.join(directory, "__pycache__")))
        except OSError:
            compiled = set()
        missing += [
            Path(directory, name) for name in sources if f"{name[:-3]}.{tag}.pyc" not in compiled
        ]
    return missing


def compile_here(files: Sequence[Path], site: Path) -> bool:
    """Compile `files` in this interpreter if it is the Python that `site` belongs to (the
    same .pyc tag): a code-only release's few modules are not worth a new interpreter's
    start. False, compiling nothing, when the venv is of another Python."""
    if cache_tag(site) != sys.implementation.cache_tag:
        return False
    for path in files:
        try:
            py_compile.compile(str(path), doraise=True)
        except py_compile.PyCompileError as err:
            where = getattr(err.exc_value, "lineno", None)
            raise DeployError(
                f"cannot compile {path}{f', line {where}' if where else ''}: "
                f"{err.exc_type_name}: {getattr(err.exc_value, 'msg', err.exc_value)}",
                hint="Fix the module, then deploy again; the serving release is untouched.",
            ) from None
    return True
