"""A release's venv made in this process, on top of a dependency layer made by uv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wheelkit import make_wheel

from shipyard.build.tools import find_python, uv_bin
from shipyard.errors import DeployError
from shipyard.release import LAYER_PTH
from shipyard.venvs import (
    InstallWheel,
    LinkScripts,
    MakeVenv,
    install_wheel,
    link_scripts,
    make_venv,
)

PYTHON = find_python("")
SITE = Path("lib") / f"python{PYTHON.minor}" / "site-packages"


DEP = "def main() -> None:\n    import app, sys\n    print(app.NAME, sys.prefix)\n"


def _uv(*args: str) -> None:
    subprocess.run([uv_bin(), *args], capture_output=True, check=True)


def _layer(tmp_path: Path) -> Path:
    """A relocatable venv with a dependency that has a console script, as layers are made."""
    dep = make_wheel(tmp_path / "store", "dep", {"dep/__init__.py": DEP}, {"dep-run": "dep:main"})
    layer = tmp_path / "layer"
    _uv("venv", "-q", "--relocatable", "--python", PYTHON.executable, str(layer))
    _uv(
        "pip",
        "install",
        "-q",
        "--offline",
        "--no-index",
        "--python",
        str(layer / "bin/python"),
        str(dep),
    )
    return layer


def test_a_release_venv_runs_the_layers_scripts_with_its_own_python(tmp_path: Path) -> None:
    layer = _layer(tmp_path)
    venv = tmp_path / "release" / "venv"
    assert make_venv(MakeVenv(PYTHON, venv)) is True  # this interpreter: made here, not by uv
    assert (venv / "pyvenv.cfg").is_file() and (venv / "bin" / "python").exists()
    app = make_wheel(
        tmp_path / "app", "app", {"app/__init__.py": 'NAME = "the app"\n'}, {"app-run": "dep:main"}
    )
    install_wheel(InstallWheel(app, venv, PYTHON.minor))
    (venv / SITE / LAYER_PTH).write_text(f"import site; site.addsitedir({str(layer / SITE)!r})\n")
    assert link_scripts(LinkScripts(layer / "bin", venv / "bin")) == 1  # dep-run; python exists
    script = venv / "bin" / "dep-run"
    assert script.read_text().startswith(f"#!{venv}/bin/python\n")  # shows as dep-run in ps
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    for name in ("dep-run", "app-run"):
        ran = subprocess.run(
            [str(venv / "bin" / name)], capture_output=True, text=True, env=env, check=True
        )
        # the layer's code, the release's app, the release's venv as sys.prefix
        assert ran.stdout.strip() == f"the app {venv}", name
    assert link_scripts(LinkScripts(layer / "bin", venv / "bin")) == 0  # nothing twice


def test_a_venv_for_another_python_is_left_to_uv(tmp_path: Path) -> None:
    other = MakeVenv(PYTHON.__class__("/opt/python3.99/bin/python3.99", "3.99.0"), tmp_path / "v")
    assert make_venv(other) is False and not other.path.exists()
    assert other.by_uv().argv[-1] == str(tmp_path / "v")


def test_a_broken_app_wheel_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "app-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(
        DeployError, match=r"cannot install the app's wheel app-1\.0-py3-none-any\.whl"
    ):
        install_wheel(InstallWheel(broken, tmp_path / "venv", PYTHON.minor))
    assert sys.executable  # the test's own interpreter is untouched
