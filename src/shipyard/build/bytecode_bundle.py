"""Dependency bytecode compiled once here and sent with the wheels, instead of on every host.

A host installing a release for the first time would compile every dependency, on each host
of a fleet (BENCHMARKS.md has what that costs). Here each wheel is compiled once
into a bundle of .pyc files, kept beside the wheel in the store, and sent with it; the host
unpacks the bundle into the new venv and compiles only what is left. In a bundle the .pyc
files are hash-based (PEP 552), as mtimes differ from machine to machine; the host checks each
against the installed source's hash and writes it as an ordinary timestamp .pyc for that file,
so a bundle can never make a host run other code than its source, and imports pay nothing.

Bundles exist only for this interpreter's version (their tag); a host of another Python
version compiles for itself.
"""

from __future__ import annotations

import importlib.util
import io
import os
import py_compile
import tarfile
import tempfile
import zipfile
from pathlib import Path

from shipyard.build.tarballs import owned_by_root
from shipyard.host.bytecode import TAG, bundle_name, tag_for

__all__ = ["TAG", "ensure_bundle", "tag_for"]


def ensure_bundle(wheel: Path, tag: str = TAG) -> Path | None:
    """The bundle of `wheel` in its store, compiled now if missing; None for another tag."""
    if tag != TAG:
        return None
    bundle = wheel.with_name(bundle_name(wheel.name, tag))
    if bundle.is_file():
        return bundle
    with tempfile.TemporaryDirectory(prefix="shipyard-pyc-") as tmp:
        data = _compile_wheel(wheel, Path(tmp))
    partial = bundle.with_name(f".{bundle.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(bundle)  # atomic: a concurrent build of the same bundle is the same bytes
    return bundle


def _compile_wheel(wheel: Path, tmp: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as archive, tarfile.open(fileobj=out, mode="w") as tar:
        for name in sorted(archive.namelist()):
            top = name.split("/", 1)[0]
            if not name.endswith(".py") or top.endswith((".data", ".dist-info")):
                continue
            source = tmp / "src" / name
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_bytes(archive.read(name))
            pyc = importlib.util.cache_from_source(name)
            try:
                py_compile.compile(
                    str(source),
                    cfile=str(tmp / "pyc" / pyc),
                    dfile=name,
                    doraise=True,
                    optimize=0,  # the hosts' interpreters load plain .pyc files
                    invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
                )
            except py_compile.PyCompileError:
                continue  # left to the host's compile step, which reports it as before
            info = tar.gettarinfo(str(tmp / "pyc" / pyc), arcname=pyc)
            info = owned_by_root(info)
            info.mtime, info.mode = 0, 0o644
            with open(tmp / "pyc" / pyc, "rb") as handle:
                tar.addfile(info, handle)
    return out.getvalue()
