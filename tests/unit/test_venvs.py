"""Venvs made in this process: a dependency layer, and a release's venv on top of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from wheelkit import make_wheel

from shipyard.build.tools import uv_bin
from shipyard.errors import DeployError
from shipyard.host.python import PythonInfo, find_python
from shipyard.host.release import LAYER_PTH
from shipyard.host.venvs import (
    InstallWheel,
    LinkScripts,
    MakeVenv,
    install_wheel,
    link_scripts,
    make_venv,
    site_packages_in,
)

PYTHON = find_python("")
DEP = "def main() -> None:\n    import app, sys\n    print(app.NAME, sys.prefix)\n"
ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def _dep(tmp_path: Path) -> Path:
    return make_wheel(tmp_path / "store", "dep", {"dep/__init__.py": DEP}, {"dep-run": "dep:main"})


def _release_on(layer: Path, tmp_path: Path) -> Path:
    venv = tmp_path / "release" / "venv"
    assert make_venv(MakeVenv(PYTHON, venv)) is True  # this interpreter: made here
    assert (venv / "pyvenv.cfg").is_file() and (venv / "bin" / "python").exists()
    app = make_wheel(
        tmp_path / "app", "app", {"app/__init__.py": 'NAME = "the app"\n'}, {"app-run": "dep:main"}
    )
    install_wheel(InstallWheel((app,), venv, PYTHON.minor))
    site = site_packages_in(layer, PYTHON.minor)
    pth = f"import site; site.addsitedir({str(site)!r})\n"
    (site_packages_in(venv, PYTHON.minor) / LAYER_PTH).write_text(pth)
    return venv


def _runs_with_the_release(venv: Path) -> None:
    for name in ("dep-run", "app-run"):
        ran = subprocess.run(
            [str(venv / "bin" / name)], capture_output=True, text=True, env=ENV, check=True
        )
        # the layer's code, the release's app, the release's venv as sys.prefix
        assert ran.stdout.strip() == f"the app {venv}", name


def test_a_release_venv_runs_the_layers_scripts_with_its_own_python(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    assert make_venv(MakeVenv(PYTHON, layer))
    install_wheel(InstallWheel((_dep(tmp_path),), layer, PYTHON.minor, "the dependency wheel"))
    assert (layer / "bin" / "dep-run").read_text().startswith(f"#!{layer}/bin/python\n")
    venv = _release_on(layer, tmp_path)
    assert link_scripts(LinkScripts(layer / "bin", venv / "bin")) == 1  # only dep-run
    script = venv / "bin" / "dep-run"
    assert script.read_text().startswith(f"#!{venv}/bin/python\n")  # shows as dep-run in ps
    _runs_with_the_release(venv)
    assert link_scripts(LinkScripts(layer / "bin", venv / "bin")) == 0  # nothing twice


def test_a_relocatable_layer_of_earlier_versions_works_too(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    python = str(layer / "bin" / "python")
    for args in (
        ("venv", "-q", "--relocatable", "--python", PYTHON.executable, str(layer)),
        (
            "pip",
            "install",
            "-q",
            "--offline",
            "--no-index",
            "--python",
            python,
            str(_dep(tmp_path)),
        ),
    ):
        subprocess.run([uv_bin(), *args], capture_output=True, check=True)
    venv = _release_on(layer, tmp_path)
    assert link_scripts(LinkScripts(layer / "bin", venv / "bin")) == 1
    _runs_with_the_release(venv)


def test_a_venv_for_another_python_is_made_by_that_python(tmp_path: Path) -> None:
    other = MakeVenv(PythonInfo("/opt/python3.99/bin/python3.99", "3.99.0"), tmp_path / "v")
    assert make_venv(other) is False and not other.path.exists()
    assert other.by_its_python().argv == (
        "/opt/python3.99/bin/python3.99",
        "-m",
        "venv",
        "--without-pip",
        "--symlinks",
        str(tmp_path / "v"),
    )


def test_a_broken_wheel_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "app-1.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    step = InstallWheel((broken,), tmp_path / "venv", PYTHON.minor)
    with pytest.raises(DeployError, match=r"cannot install the app's wheel app-1\.0-py3-none"):
        install_wheel(step)
