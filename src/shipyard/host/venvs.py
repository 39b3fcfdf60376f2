"""Venvs and their wheels, made in the installer's own process: no tool, no interpreter.

A code-only release needs a near-empty venv (its dependencies are a shared layer) and one
small wheel unpacked into it; a new layer needs its pinned wheels unpacked. The standard
library's venv and PyPA's `installer` do both here: for the example app's nine dependency
wheels, a third of uv's CPU (which fills its cache, then links from it), and no uv on the
hosts. A venv for another Python than this one is made by that Python's venv module.
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

from shipyard.errors import DeployError
from shipyard.host.python import PythonInfo
from shipyard.host.steps import Command, InstallContext, execute


@dataclass(frozen=True)
class MakeVenv:
    """An empty venv (no pip) at `path`, for `python`."""

    python: PythonInfo
    path: Path

    def __str__(self) -> str:
        return f"make a venv at {self.path} for {self.python.executable}"

    def by_its_python(self) -> Command:
        """For another Python than this one: its own venv module makes it."""
        return Command(
            (self.python.executable, "-m", "venv", "--without-pip", "--symlinks", str(self.path))
        )

    def run(self, ctx: InstallContext) -> None:
        if not make_venv(self):
            execute(ctx.conn, self.by_its_python())

    def here(self) -> bool:
        """Made in this process: it runs the same interpreter."""
        own = getattr(sys, "_base_executable", sys.executable)
        return os.path.realpath(self.python.executable) == os.path.realpath(own)


@dataclass(frozen=True)
class InstallWheel:
    """Wheels unpacked into a venv as they are: no resolving (they are the release's pins,
    resolved when it was built, or its app wheel over a layer that has its dependencies)."""

    wheels: tuple[Path, ...]
    venv: Path
    python_minor: str
    what: str = "the app's wheel"

    def __str__(self) -> str:
        names = ", ".join(w.name for w in self.wheels[:3])
        more = f" and {len(self.wheels) - 3} more" if len(self.wheels) > 3 else ""
        return f"install {names}{more} into {self.venv}, without resolving"

    def run(self, ctx: InstallContext) -> None:
        install_wheel(self)


@dataclass(frozen=True)
class LinkScripts:
    """The layer's scripts in a release's bin, run by the release's Python."""

    layer_bin: Path
    venv_bin: Path

    def __str__(self) -> str:
        return f"put the scripts of {self.layer_bin} into {self.venv_bin}"

    def run(self, ctx: InstallContext) -> None:
        link_scripts(self)


# How a relocatable venv's script starts (a layer made by uv venv --relocatable, as earlier
# versions did): three lines that make /bin/sh run the Python beside the script.
_RELOCATABLE = b"#!/bin/sh\n'" + b"''exec' "


def link_scripts(step: LinkScripts) -> int:
    """Write each script the layer's packages installed into the release's bin; how many.

    A console script gets the release's Python as its shebang, so that it runs with the app
    on its path and shows under its own name in ps; anything else (a binary) is hard-linked.
    The venv's own files (python, activate) are the release venv's already.
    """
    done = 0
    python = f"#!{step.venv_bin / 'python'}\n".encode()
    layer_python = f"#!{step.layer_bin / 'python'}\n".encode()
    for name in installed_scripts(step.layer_bin.parent):
        source, dest = step.layer_bin / name, step.venv_bin / name
        if os.path.lexists(dest) or not source.is_file():
            continue
        text = source.read_bytes()
        body = (
            text[len(layer_python) :]
            if text.startswith(layer_python)
            else text.split(b"\n", 3)[3]
            if text.startswith(_RELOCATABLE)
            else None
        )
        if body is not None:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
            with os.fdopen(fd, "wb") as out:
                out.write(python + body)
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
    """Make the venv here; False when it is for another Python (run step.by_its_python())."""
    if not step.here():
        return False
    stdlib_venv.EnvBuilder(symlinks=True, with_pip=False).create(str(step.path))
    return True


def install_wheel(step: InstallWheel) -> None:
    venv = step.venv
    destination = wheel_destination(venv, step.python_minor, str(venv / "bin" / "python"))
    for wheel in step.wheels:
        try:
            with WheelFile.open(wheel) as source:
                install(source, destination, {"INSTALLER": b"shipyard\n"})
        except (InstallerError, OSError, ValueError, zipfile.BadZipFile) as err:
            raise DeployError(
                f"cannot install {step.what} {wheel.name} into {venv}: {err}",
                hint="Deploy again: a wheel that arrived damaged is sent again; if it was "
                "built from the project, check its build configuration (pyproject.toml). The "
                "serving release is untouched.",
            ) from None
