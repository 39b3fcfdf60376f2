"""A release's venv and its app wheel, made in this process: no uv, no interpreter started.

A code-only release needs a near-empty venv (its dependencies are a shared layer) and one
small wheel unpacked into it. uv would start twice and query the new venv's interpreter,
which costs more than the work itself; the standard library's venv and PyPA's `installer`
do it here in a few milliseconds. A venv for another Python than this one is left to uv.
"""

from __future__ import annotations

import os
import sys
import venv as stdlib_venv
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


def make_venv(step: MakeVenv) -> bool:
    """Make the venv here; False when it is for another Python (run step.by_uv() then)."""
    if not step.here():
        return False
    stdlib_venv.EnvBuilder(symlinks=True, with_pip=False).create(str(step.path))
    return True


def install_wheel(step: InstallWheel) -> None:
    venv = step.venv
    site = venv / "lib" / f"python{step.python_minor}" / "site-packages"
    scheme = {
        "purelib": str(site),
        "platlib": str(site),
        "scripts": str(venv / "bin"),
        "headers": str(venv / "include" / "site" / f"python{step.python_minor}"),
        "data": str(venv),
    }
    destination = SchemeDictionaryDestination(
        scheme,
        interpreter=str(venv / "bin" / "python"),
        script_kind="posix",
        bytecode_optimization_levels=(),  # compiled after, with what the last release had
    )
    try:
        with WheelFile.open(step.wheel) as source:
            install(source, destination, {"INSTALLER": b"shipyard\n"})
    except (InstallerError, OSError, ValueError) as err:
        raise DeployError(
            f"cannot install the app's wheel {step.wheel.name} into {venv}: {err}",
            hint="The wheel is built from the project: check its build configuration "
            "(pyproject.toml), then deploy again; the serving release is untouched.",
        ) from None
