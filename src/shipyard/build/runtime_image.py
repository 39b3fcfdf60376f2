"""shipyard's runtime for a host as one tar, built here once and kept in the cache.

The tar holds the runtime venv's packages already installed (`venv/lib/pythonX.Y/
site-packages`, with console scripts in `venv/bin` that run the Python beside them) and their
bytecode when this interpreter is the host's version. A host unpacks it into a venv it makes
with its own Python: it installs no wheel, so it spends no CPU on unzipping and compiling.
Nothing in it names a host's paths, so one file serves every host of a kind, and ssh reads it
from disk.
"""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from installer import install
from installer.sources import WheelFile

from shipyard.build.tarballs import owned_by_root
from shipyard.host.venvs import site_packages_in, wheel_destination
from shipyard.host.wire import sha256_of

# How the runtime is laid out and sent (this module); part of the runtime's id, so
# that a host with an older kind is provisioned anew.
RUNTIME_FORMAT = 3


# Console scripts run the venv's Python beside them wherever the venv is, as a relocatable
# venv's do: /bin/sh reads the first lines, and Python reads them as a string.
_PLACEHOLDER = "/shipyard-runtime-python"
_RELOCATABLE = (
    b'#!/bin/sh\n\'\'\'exec\' "$(dirname -- "$(realpath -- "$0")")"/python "$0" "$@"\n\' \'\'\'\n'
)


# What the image leaves out of the installed packages: nothing imports it on a host, and each
# file costs a host a file to write. Paths under site-packages, as glob patterns.
LEFT_OUT = (
    "supervisor/tests",  # supervisor's own test suite
    "installer/_scripts/*.exe",  # Windows launchers, for Windows hosts only
    "pydantic/mypy.py",  # the plugin for mypy, which never runs on a host
)
# Part of the cache key: a change to what an image holds makes new ones.
IMAGE_FORMAT = 2


@dataclass(frozen=True)
class Image:
    path: Path
    sha256: str

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def runtime_image(cache: Path, wheels: list[Path], python_minor: str) -> Image:
    """The image for hosts whose Python is `python_minor`: built on first use, then read
    from the cache."""
    with_bytecode = python_minor == f"{sys.version_info.major}.{sys.version_info.minor}"
    key = json.dumps(
        [
            RUNTIME_FORMAT,
            IMAGE_FORMAT,
            python_minor,
            with_bytecode,
            *(_identity(p) for p in wheels),
        ],
        separators=(",", ":"),
    )
    home = cache / "runtime-images" / hashlib.sha256(key.encode()).hexdigest()[:16]
    tar, digest = home / "runtime.tar", home / "runtime.tar.sha256"
    if tar.is_file() and digest.is_file():
        return Image(tar, digest.read_text().strip())
    home.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="staging-", dir=home) as tmp:
        staging = Path(tmp)
        site = _install(wheels, staging / "venv", python_minor)
        # The import system names the source a .pyc was loaded for: no ddir is needed.
        if with_bytecode and not compileall.compile_dir(site, quiet=2, workers=1):
            raise RuntimeError(f"the runtime's packages did not compile under {site}")
        partial = tar.with_suffix(".partial")
        _write_tar(partial, staging, ("venv",))
        sha = sha256_of(partial)
        os.replace(partial, tar)
    digest.write_text(sha + "\n")
    return Image(tar, sha)


def _install(wheels: list[Path], venv: Path, python_minor: str) -> Path:
    destination = wheel_destination(venv, python_minor, _PLACEHOLDER)
    for wheel in wheels:
        with WheelFile.open(wheel) as source:
            install(source, destination, {"INSTALLER": b"shipyard\n"})
    shebang = f"#!{_PLACEHOLDER}\n".encode()
    for script in (venv / "bin").glob("*"):
        text = script.read_bytes()
        if text.startswith(shebang):
            script.write_bytes(_RELOCATABLE + text[len(shebang) :])
    site = site_packages_in(venv, python_minor)
    leave_out(site, LEFT_OUT)
    return site


def leave_out(site: Path, patterns: tuple[str, ...]) -> None:
    """Remove what `patterns` match, and their lines in the RECORD files, which then list
    exactly what is installed."""
    gone: list[Path] = []
    for pattern in patterns:
        for path in site.glob(pattern):
            gone.append(path)
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if not gone:
        return
    for record in site.glob("*.dist-info/RECORD"):
        lines = record.read_text().splitlines(keepends=True)
        kept = [line for line in lines if not _listed_under(site / line.split(",", 1)[0], gone)]
        if len(kept) != len(lines):
            record.write_text("".join(kept))


def _listed_under(path: Path, gone: list[Path]) -> bool:
    return any(path == top or top in path.parents for top in gone)


def _identity(path: Path) -> list[object]:
    stat = path.stat()
    return [path.name, stat.st_size, int(stat.st_mtime)]


def _write_tar(path: Path, root: Path, tops: tuple[str, ...]) -> None:
    with tarfile.open(path, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for top in tops:
            tar.add(root / top, arcname=top, filter=owned_by_root)
