"""The host runtime as one tar: packages installed here, bytecode, relocatable scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from wheelkit import make_wheel

from shipyard.build.runtime_image import runtime_image
from shipyard.venvs import site_packages_in

MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
FILES = {
    "pkg/__init__.py": 'VALUE = "from the image"\n',
    "pkg/cli.py": "def main() -> None:\n    import pkg, sys\n    print(pkg.VALUE, sys.prefix)\n",
}


def _wheel(store: Path) -> Path:
    return make_wheel(store, "pkg", FILES, {"pkg-hello": "pkg.cli:main"})


def test_the_image_unpacks_into_a_venv_anywhere_and_runs(tmp_path: Path) -> None:
    image = runtime_image(tmp_path / "cache", [_wheel(tmp_path / "w")], MINOR)
    with tarfile.open(image.path) as tar:
        names = set(tar.getnames())
        assert all(m.uid == 0 and m.uname == "root" for m in tar.getmembers())
    site = site_packages_in(Path("venv"), MINOR).as_posix()
    tag = sys.implementation.cache_tag
    assert {f"{site}/pkg/__init__.py", f"{site}/pkg/__pycache__/cli.{tag}.pyc"} <= names
    assert "venv/bin/pkg-hello" in names and all(n.startswith("venv") for n in names)
    # a venv made where the host wants it, with the image unpacked on top
    venv = tmp_path / "host" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run(["tar", "-xf", str(image.path), "-C", str(venv.parent), "venv"], check=True)
    ran = subprocess.run(
        [str(venv / "bin" / "pkg-hello")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert ran.stdout.split() == ["from", "the", "image", str(venv)]
    # its bytecode is valid for the unpacked source: Python loads it, and does not rewrite it
    pyc = site_packages_in(venv, MINOR) / "pkg" / "__pycache__" / f"cli.{tag}.pyc"
    sent = pyc.stat().st_mtime_ns
    writing = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([str(venv / "bin" / "python"), "-c", "import pkg.cli"], env=writing, check=True)
    assert pyc.stat().st_mtime_ns == sent


def test_the_image_is_built_once_and_again_when_a_wheel_changes(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "w")
    first = runtime_image(tmp_path / "cache", [wheel], MINOR)
    built = first.path.stat().st_mtime_ns
    again = runtime_image(tmp_path / "cache", [wheel], MINOR)
    assert again == first and again.path.stat().st_mtime_ns == built
    with zipfile.ZipFile(wheel, "a") as archive:
        archive.writestr("pkg/extra.py", "X = 1\n")
    changed = runtime_image(tmp_path / "cache", [wheel], MINOR)
    assert changed.path != first.path and changed.sha256 != first.sha256
