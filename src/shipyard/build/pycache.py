"""Bytecode of the project's modules kept between test runs, outside the project's tree.

The test gate used to run with PYTHONDONTWRITEBYTECODE (a deploy leaves the tree as it found
it), so every run compiled each module of the project and pytest rewrote each test module
again. Now the run writes its bytecode under the cache (PYTHONPYCACHEPREFIX), and the
project's modules are compiled there beforehand as *checked-hash* pycs: Python checks each
against its source's hash at import, and rewrites it as the same kind when it differs. A
timestamp pyc would trust a source edited within the same second at the same size; none is
kept for the project's files, and pytest's rewritten modules go when their source changed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import py_compile
import sys
from collections.abc import Iterable
from pathlib import Path

_CHECKED_HASH = 0b11  # the pyc header's flags: hash-based, checked against the source


def bytecode_env(
    prefix: Path, project: Path, files: Iterable[Path], *, same_python: bool
) -> dict[str, str]:
    """The environment a test run of `project` gets for its bytecode: `prefix` with the
    project's `files` (relative) compiled into it up to date; or no bytecode written at all
    when the tests run on another Python than this one (its pycs are not ours to make)."""
    if not same_python:
        return {"PYTHONDONTWRITEBYTECODE": "1"}
    root = project.resolve()
    sources = [root / f for f in files if f.suffix == ".py"]
    for source in sources:
        _compile(source, cache_path(prefix, source))
    _forget_untrusted(prefix, root, set(sources))
    # written under the prefix even where the caller's environment says to write none (it
    # keeps source trees clean, which the prefix does): otherwise every module, the
    # standard library's too, would be compiled afresh at each run
    return {"PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": ""}


def cache_path(prefix: Path, source: Path, tag: str | None = None) -> Path:
    """Where Python looks for `source`'s bytecode under a PYTHONPYCACHEPREFIX of `prefix`."""
    name = f"{source.stem}.{tag or sys.implementation.cache_tag}.pyc"
    return prefix / source.parent.relative_to(source.anchor) / name


def _compile(source: Path, pyc: Path) -> None:
    """A checked-hash pyc of `source` at `pyc`, unless the one there is of its content;
    pytest's rewrite of the module goes with an outdated one."""
    try:
        data = source.read_bytes()
    except OSError:
        return
    expected = importlib.util.source_hash(data)
    with contextlib.suppress(OSError):
        with pyc.open("rb") as handle:
            header = handle.read(16)
        if (
            header[:4] == importlib.util.MAGIC_NUMBER
            and int.from_bytes(header[4:8], "little") == _CHECKED_HASH
            and header[8:16] == expected
        ):
            return
    for rewritten in pyc.parent.glob(f"{source.stem}.*-pytest-*.pyc"):
        rewritten.unlink(missing_ok=True)
    try:
        py_compile.compile(
            str(source),
            cfile=str(pyc),
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    except py_compile.PyCompileError:
        pyc.unlink(missing_ok=True)  # the test run reports the error


def _forget_untrusted(prefix: Path, root: Path, compiled: set[Path]) -> None:
    """Under the project's part of `prefix`, every pyc of a module that is not among the
    `compiled` ones (excluded from the artifact, or gone): Python or pytest made it by
    timestamp, which an edit within a second can fool."""
    mirror = prefix / root.relative_to(root.anchor)
    if not mirror.is_dir():
        return
    for pyc in mirror.rglob("*.pyc"):
        source = root / pyc.parent.relative_to(mirror) / f"{pyc.name.split('.', 1)[0]}.py"
        if source not in compiled:
            pyc.unlink(missing_ok=True)
