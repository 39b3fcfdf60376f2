"""The host runtime as one tar: packages installed here, bytecode, relocatable scripts."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from wheelkit import make_wheel

import shipyard.build.runtime_image as runtime_image_module
from shipyard.build.runtime_image import LEFT_OUT, leave_out, runtime_image
from shipyard.host.venvs import site_packages_in

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


def test_the_image_leaves_out_what_no_host_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {**FILES, "pkg/tests/test_pkg.py": "def test() -> None: ...\n", "pkg/w64.exe": "MZ"}
    wheel = make_wheel(tmp_path / "w", "pkg", files, {"pkg-hello": "pkg.cli:main"})
    monkeypatch.setattr(runtime_image_module, "LEFT_OUT", ("pkg/tests", "pkg/*.exe"))
    image = runtime_image(tmp_path / "cache", [wheel], MINOR)
    site = site_packages_in(Path("venv"), MINOR).as_posix()
    with tarfile.open(image.path) as tar:
        names = set(tar.getnames())
        record = tar.extractfile(f"{site}/pkg-1.0.dist-info/RECORD")
        assert record is not None
        listed = {line.split(",")[0] for line in record.read().decode().splitlines()}
    assert f"{site}/pkg/cli.py" in names and "pkg/cli.py" in listed
    assert not [n for n in names if "/pkg/tests" in n or n.endswith(".exe")]
    assert not [p for p in listed if p.startswith("pkg/tests") or p.endswith(".exe")]


def test_shipyards_runtime_leaves_out_test_suites_and_windows_launchers(tmp_path: Path) -> None:
    site = tmp_path / "site"
    for rel in ("supervisor/tests/test_a.py", "supervisor/xmlrpc.py", "installer/_scripts/w64.exe"):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    (site / "supervisor-4.dist-info").mkdir()
    (site / "supervisor-4.dist-info/RECORD").write_text(
        "supervisor/tests/test_a.py,,\nsupervisor/xmlrpc.py,,\n"
    )
    leave_out(site, LEFT_OUT)
    assert sorted(p.relative_to(site).as_posix() for p in site.rglob("*") if p.is_file()) == [
        "supervisor-4.dist-info/RECORD",
        "supervisor/xmlrpc.py",
    ]
    assert (site / "supervisor-4.dist-info/RECORD").read_text() == "supervisor/xmlrpc.py,,\n"
