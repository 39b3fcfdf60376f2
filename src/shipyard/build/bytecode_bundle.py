"""Dependency bytecode compiled once here and sent with the wheels, instead of on every host.

A host installing a release for the first time would compile every dependency (a third of a
second of CPU for a small Flask app, on each host of a fleet). Here each wheel is compiled once
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
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

TAG = sys.implementation.cache_tag  # "cpython-311"


def tag_for(python_version: str) -> str:
    """The .pyc tag of a CPython version: "3.11.2" -> "cpython-311"."""
    return "cpython-" + "".join(python_version.split(".")[:2])


def bundle_name(wheel_file: str, tag: str = TAG) -> str:
    return f"{wheel_file}.{tag}.pyc.tar"


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
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
            info.mode = 0o644
            with open(tmp / "pyc" / pyc, "rb") as handle:
                tar.addfile(info, handle)
    return out.getvalue()


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
