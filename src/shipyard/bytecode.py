"""Bytecode carried over between releases, so a code-only release compiles only its own code.

A release's venv is new, but uv hard-links unchanged dependency files from its cache, so a
source file of the new venv is often the very file of the previous one, and its .pyc there is
valid here too. Linking those .pyc files in, and then compiling what is left, turns most of a
release's compile time into a few thousand stat calls.
"""

from __future__ import annotations

import contextlib
import os
import py_compile
import sys
from collections.abc import Sequence
from pathlib import Path

from shipyard.errors import DeployError


def site_packages(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    return found[0] if found else None


def reuse_bytecode(old_venv: Path, new_venv: Path) -> int:
    """Hard-link each .pyc of `old_venv` whose source is unchanged in `new_venv`; how many."""
    old_site, new_site = site_packages(old_venv), site_packages(new_venv)
    if old_site is None or new_site is None or old_site.name != new_site.name:
        return 0
    if old_site.parent.name != new_site.parent.name:  # another Python: other .pyc tags
        return 0
    # plain strings and one mkdir per directory: this walks every .pyc of the venv at each
    # release, where pathlib's objects and a mkdir per file cost more than the links
    old_root, new_root = str(old_site), str(new_site)
    linked = 0
    for cache_dir, _dirs, files in os.walk(old_root):
        if os.path.basename(cache_dir) != "__pycache__":
            continue
        old_dir = os.path.dirname(cache_dir)
        new_dir = os.path.join(new_root, os.path.relpath(old_dir, old_root))
        target_dir = os.path.join(new_dir, "__pycache__")
        made = False
        for name in files:
            if not name.endswith(".pyc"):
                continue
            module = name.split(".", 1)[0] + ".py"
            if not _same_file(os.path.join(old_dir, module), os.path.join(new_dir, module)):
                continue
            try:
                if not made:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(target_dir)
                    made = True
                os.link(os.path.join(cache_dir, name), os.path.join(target_dir, name))
                linked += 1
            except FileExistsError:
                continue
            except OSError:
                return linked  # another filesystem, or no permission: compile instead
    return linked


def _same_file(old: str, new: str) -> bool:
    """The very same file (one inode, linked from uv's cache), so the same content.

    Size and mtime are not enough: wheel builders pin every file's mtime, so two versions of
    a module of equal length look alike (and would load the old bytecode).
    """
    try:
        a, b = os.stat(old), os.stat(new)
    except OSError:
        return False
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


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
