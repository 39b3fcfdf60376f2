"""Dependency bytecode compiled once and unpacked on hosts, valid for the installed source."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from shipyard.build.bytecode_bundle import ensure_bundle
from shipyard.host.bytecode import TAG, tag_for, unpack_bundles

FILES = {
    "pkg/__init__.py": "",
    "pkg/mod.py": 'VALUE = "from the wheel"\n',
    "pkg/legacy.py": "print 'python 2'\n",  # does not compile: left to the host, as before
    "pkg-1.0.dist-info/METADATA": "Name: pkg\n",
}


def _wheel(store: Path) -> Path:
    store.mkdir(parents=True)
    wheel = store / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in FILES.items():
            archive.writestr(name, text)
    return wheel


def _install(site: Path, **changed: str) -> None:
    for name, text in {**FILES, **changed}.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)


def test_a_bundle_holds_the_wheels_bytecode_once(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "store")
    bundle = ensure_bundle(wheel)
    assert bundle is not None and bundle.name == f"{wheel.name}.{TAG}.pyc.tar"
    with tarfile.open(bundle) as tar:
        names = sorted(tar.getnames())
    assert names == [f"pkg/__pycache__/__init__.{TAG}.pyc", f"pkg/__pycache__/mod.{TAG}.pyc"]
    built = bundle.stat().st_mtime_ns
    assert ensure_bundle(wheel) == bundle and bundle.stat().st_mtime_ns == built
    assert ensure_bundle(wheel, "cpython-399") is None
    assert tag_for(".".join(map(str, sys.version_info[:3]))) == TAG


def test_unpacked_bytecode_is_what_python_loads_for_the_installed_source(tmp_path: Path) -> None:
    bundle = ensure_bundle(_wheel(tmp_path / "store"))
    assert bundle is not None
    site = tmp_path / "site"
    _install(site)
    assert unpack_bundles([bundle], site) == 2
    pyc = site / "pkg" / "__pycache__" / f"mod.{TAG}.pyc"
    loaded = subprocess.run(
        [sys.executable, "-v", "-c", "import pkg.mod; print(pkg.mod.VALUE)"],
        cwd=site,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "from the wheel"
    assert f"# {pyc} matches {site / 'pkg' / 'mod.py'}" in loaded.stderr


def test_bytecode_of_other_source_is_not_written(tmp_path: Path) -> None:
    bundle = ensure_bundle(_wheel(tmp_path / "store"))
    assert bundle is not None
    site = tmp_path / "site"
    _install(site, **{"pkg/mod.py": 'VALUE = "edited"\n'})
    assert unpack_bundles([bundle], site) == 1  # __init__ only
    assert not (site / "pkg" / "__pycache__" / f"mod.{TAG}.pyc").exists()
