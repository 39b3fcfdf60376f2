"""Bytecode for a release: which of its files lack it, and compiling the few that do.

A release's dependencies are a layer whose bytecode came with the wheels (bytecode_bundle.py),
so a code-only release has only the app's own modules to compile: a handful, compiled in the
installer's own process when it is the venv's Python. `CompileVenv` is the install step that
does all of it.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import sys
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.errors import DeployError
from shipyard.host.artifact import Artifact
from shipyard.host.steps import Command, Connection, InstallContext, execute


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


@dataclass(frozen=True)
class CompileVenv:
    """Compile a venv's bytecode: for a layer, unpack its dependencies' bundles first; then
    compile the few files still lacking bytecode here, or run compileall over it all."""

    venv: Path

    def command(self) -> Command:
        """What compiles it all (what it runs at most; a dry run shows it)."""
        venv = self.venv
        return Command(
            (str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")),
            timeout=600,
        )

    def __str__(self) -> str:
        return str(self.command())

    def run(self, ctx: InstallContext) -> None:
        if ctx.bundles_of is not None:
            unpack_dependency_bytecode(ctx.wheels, ctx.bundles_of, self.venv)
        missing = few_lacking_bytecode(self.venv)
        if missing is None:
            execute(ctx.conn, self.command())
        elif missing:
            compile_files(ctx.conn, self.venv, missing)


@dataclass(frozen=True)
class CompileTree:
    """Compile a source tree's modules where the release has them: the app, which may not
    write there (an ssh host's app user), would otherwise compile them at every start."""

    tree: Path
    venv: Path

    def command(self) -> Command:
        return Command(
            (str(self.venv / "bin" / "python"), "-m", "compileall", "-q", str(self.tree)),
            timeout=600,
        )

    def __str__(self) -> str:
        return str(self.command())

    def run(self, ctx: InstallContext) -> None:
        site = site_packages(self.venv)
        if site is None or cache_tag(site) != sys.implementation.cache_tag:
            ctx.conn.run(self.command())  # a module that does not compile fails on import
            return
        for path in sorted(self.tree.rglob("*.py")):
            try:
                py_compile.compile(str(path), doraise=True)
            except py_compile.PyCompileError:
                continue  # not imported, maybe (a script for another Python): left as it is


def unpack_dependency_bytecode(store: Path, artifact: Artifact, venv: Path) -> int:
    site = site_packages(venv)
    if site is None:
        return 0
    tag = cache_tag(site)
    bundles = [store / bundle_name(w.file, tag) for w in artifact.manifest.wheels]
    try:
        return unpack_bundles([b for b in bundles if b.is_file()], site)
    except (OSError, tarfile.TarError):  # only a shortcut: the compile step does the rest
        return 0


def few_lacking_bytecode(venv: Path, most: int = 200) -> list[Path] | None:
    """After bytecode was carried over: the few files left to compile (a code-only release:
    the app's own); None when there are many, or it cannot be told, for one compileall."""
    missing = without_bytecode(venv)
    return None if missing is None or len(missing) > most else missing


def compile_files(conn: Connection, venv: Path, files: list[Path]) -> None:
    """Compile a few of the venv's files: here when this is the venv's Python, else by it."""
    site = site_packages(venv)
    if site is not None and compile_here(files, site):
        return
    python = str(venv / "bin" / "python")
    execute(conn, Command((python, "-m", "py_compile", *map(str, files)), timeout=600))


# --- bundles: a wheel's bytecode, compiled once on the deploying machine (build/bytecode_bundle.py)

TAG = sys.implementation.cache_tag  # "cpython-311"


def tag_for(python_version: str) -> str:
    """The .pyc tag of a CPython version: "3.11.2" -> "cpython-311"."""
    return "cpython-" + "".join(python_version.split(".")[:2])


def bundle_name(wheel_file: str, tag: str = TAG) -> str:
    return f"{wheel_file}.{tag}.pyc.tar"


def unpack_bundles(bundles: Iterable[Path], site_packages: Path) -> int:
    """Write the .pyc files of each bundle whose source is installed here, as it is; how many.

    Only `__pycache__/*.pyc` members with plain relative paths are taken (Python 3.11.2, as
    on Debian 12, has no tarfile extraction filters).
    """
    written = 0
    for bundle in bundles:
        with tarfile.open(bundle) as tar:
            for member in tar:
                rel = PurePosixPath(member.name)
                if (
                    not member.isfile()
                    or rel.is_absolute()
                    or ".." in rel.parts
                    or len(rel.parts) < 2
                    or rel.parts[-2] != "__pycache__"
                    or rel.suffix != ".pyc"
                ):
                    continue
                extracted = tar.extractfile(member)
                target = site_packages / rel
                source = target.parent.parent / (rel.name.split(".", 1)[0] + ".py")
                if extracted is None or not source.is_file():
                    continue
                pyc = _as_timestamp_pyc(extracted.read(), source)
                if pyc is None:
                    continue
                target.parent.mkdir(exist_ok=True)
                # a new file, never written through: a .pyc may be a link shared with a release
                partial = target.with_name(f".{target.name}.partial")
                partial.write_bytes(pyc)
                os.replace(partial, target)
                written += 1
    return written


def _as_timestamp_pyc(data: bytes, source: Path) -> bytes | None:
    """A hash-based .pyc as the timestamp .pyc of `source`, if it was compiled from it."""
    flags = int.from_bytes(data[4:8], "little")
    if len(data) < 16 or data[:4] != importlib.util.MAGIC_NUMBER or not flags & 0b1:
        return None
    content = source.read_bytes()
    if importlib.util.source_hash(content) != data[8:16]:
        return None
    mtime = int(source.stat().st_mtime) & 0xFFFFFFFF
    header = data[:4] + (0).to_bytes(4, "little")
    header += mtime.to_bytes(4, "little") + (len(content) & 0xFFFFFFFF).to_bytes(4, "little")
    return header + data[16:]
