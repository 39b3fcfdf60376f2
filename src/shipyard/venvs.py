"""A release's venv and its app wheel, made in this process: no uv, no interpreter started.

A code-only release needs a near-empty venv (its dependencies are a shared layer) and one
small wheel unpacked into it. uv would start twice and query the new venv's interpreter,
which costs more than the work itself; the standard library's venv and PyPA's `installer`
do it here in a few milliseconds. A venv for another Python than this one is left to uv.
"""

from __future__ import annotations

import os
import shutil
import sys
import venv as stdlib_venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.exceptions import InstallerError
from installer.sources import WheelFile

from shipyard.build.tools import PythonInfo, uv
from shipyard.errors import DeployError
from shipyard.hosts.base import Command


@dataclass(frozen=True)
class MakeVenv:
    """An empty venv (no pip) at `path`, for `python`."""

    python: PythonInfo
    path: Path

    def __str__(self) -> str:
        return f"make a venv at {self.path} for {self.python.executable}"

    def by_uv(self) -> Command:
        return uv("venv", "--quiet", "--python", self.python.executable, str(self.path))

    def here(self) -> bool:
        """Made in this process: it runs the same interpreter."""
        own = getattr(sys, "_base_executable", sys.executable)
        return os.path.realpath(self.python.executable) == os.path.realpath(own)


@dataclass(frozen=True)
class InstallWheel:
    """One wheel unpacked into a venv, without its dependencies (the layer has them)."""

    wheel: Path
    venv: Path
    python_minor: str

    def __str__(self) -> str:
        return f"install {self.wheel.name} into {self.venv}, without dependencies"


@dataclass(frozen=True)
class LinkScripts:
    """The layer's scripts in a release's bin, run by the release's Python."""

    layer_bin: Path
    venv_bin: Path

    def __str__(self) -> str:
        return f"put the scripts of {self.layer_bin} into {self.venv_bin}"


# How a relocatable venv's script (uv venv --relocatable) starts: three lines that make
# /bin/sh run the Python beside the script.
_RELOCATABLE = b"#!/bin/sh\n'" + b"''exec' "


def link_scripts(step: LinkScripts) -> int:
    """Write each script the layer's packages installed into the release's bin; how many.

    A console script gets the release's Python as its shebang, so that it runs with the app
    on its path and shows under its own name in ps; anything else (a binary) is hard-linked.
    The venv's own files (python, activate) are the release venv's already.
    """
    done = 0
    python = f"#!{step.venv_bin / 'python'}\n".encode()
    for name in installed_scripts(step.layer_bin.parent):
        source, dest = step.layer_bin / name, step.venv_bin / name
        if os.path.lexists(dest) or not source.is_file():
            continue
        text = source.read_bytes()
        if text.startswith(_RELOCATABLE):
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
            with os.fdopen(fd, "wb") as out:
                out.write(python + text.split(b"\n", 3)[3])
        else:
            try:
                os.link(source, dest)
            except OSError:
                shutil.copy2(source, dest)
        done += 1
    return done


def installed_scripts(venv: Path) -> list[str]:
    """The names in a venv's bin that its packages installed, from their RECORD files."""
    names = set()
    for record in venv.glob("lib/python3*/site-packages/*.dist-info/RECORD"):
        for line in record.read_text(errors="replace").splitlines():
            path = line.rsplit(",", 2)[0]
            if path.startswith("../../../bin/") and path.count("/") == 4:
                names.add(path.rsplit("/", 1)[1])
    return sorted(names)


def site_packages_in(venv: Path, python_minor: str) -> Path:
    """Where a venv's packages are (POSIX, CPython)."""
    return venv / "lib" / f"python{python_minor}" / "site-packages"


def wheel_destination(
    venv: Path, python_minor: str, interpreter: str
) -> SchemeDictionaryDestination:
    """Where `installer` puts a wheel's parts in a venv; scripts run `interpreter`. No
    bytecode: it is compiled after, or linked from what the last release had."""
    site = str(site_packages_in(venv, python_minor))
    scheme = {
        "purelib": site,
        "platlib": site,
        "scripts": str(venv / "bin"),
        "headers": str(venv / "include" / "site" / f"python{python_minor}"),
        "data": str(venv),
    }
    return SchemeDictionaryDestination(
        scheme, interpreter=interpreter, script_kind="posix", bytecode_optimization_levels=()
    )


def make_venv(step: MakeVenv) -> bool:
    """Make the venv here; False when it is for another Python (run step.by_uv() then)."""
    if not step.here():
        return False
    stdlib_venv.EnvBuilder(symlinks=True, with_pip=False).create(str(step.path))
    return True


def install_wheel(step: InstallWheel) -> None:
    venv = step.venv
    destination = wheel_destination(venv, step.python_minor, str(venv / "bin" / "python"))
    try:
        with WheelFile.open(step.wheel) as source:
            install(source, destination, {"INSTALLER": b"shipyard\n"})
    except (InstallerError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise DeployError(
            f"cannot install the app's wheel {step.wheel.name} into {venv}: {err}",
            hint="The wheel is built from the project: check its build configuration "
            "(pyproject.toml), then deploy again; the serving release is untouched.",
        ) from None
