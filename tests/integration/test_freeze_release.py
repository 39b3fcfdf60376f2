"""End to end: `shipyard freeze` of a deployed app lists what its release runs, and installs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.build.deps import compile_lock, parse_pins
from shipyard.host.local import LocalConnection
from shipyard.host.python import find_python

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

LISTING = (
    "import importlib.metadata as m, json; "
    "print(json.dumps(sorted(f\"{d.name.lower().replace('_', '-')}=={d.version}\" "
    "for d in m.distributions())))"
)


def _shipyard(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SHIPYARD_WARM": "0"},
    )


def test_freeze_lists_the_live_release_and_installs(
    deployment: Deployment, capsys: pytest.CaptureFixture[str], cache: Path, tmp_path: Path
) -> None:
    project = str(deployment.project)
    code, _, err = deployment.cli("freeze", project, capsys=capsys)
    assert code == 1
    assert "app flaskr is not deployed under" in err and "no live release to freeze" in err

    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    code, frozen, err = deployment.cli("freeze", project, capsys=capsys)
    assert code == 0, err
    live = deployment.app("flaskr").current.resolve().name
    assert frozen.splitlines()[0] == f"# the live release {live} (shipyard freeze)"
    pins = frozen.splitlines()[1:]
    assert "gunicorn" in {pin.split("==")[0] for pin in pins}
    assert pins == sorted(pins)

    # what the release's environment has installed: the pins, the app itself and pip's kin
    listed = _shipyard("run", project, "--", "python", "-c", LISTING)
    assert listed.returncode == 0, listed.stderr
    listing: list[str] = json.loads(listed.stdout)
    installed = {d for d in listing if not d.startswith(("flaskr==", "pip==", "setuptools=="))}
    assert set(pins) == installed

    # -o with hashes: pip installs exactly that from the release's wheels, offline
    out = tmp_path / "requirements.txt"
    code, printed, err = deployment.cli(
        "freeze", project, "--hashes", "-o", str(out), capsys=capsys
    )
    assert code == 0 and printed == "", err
    assert f"{len(pins)} pins of release {live}" in err
    assert out.read_text().count("--hash=sha256:") == len(pins)
    dry_run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--no-index",
            "--find-links",
            str(cache / "wheels"),
            "--require-hashes",
            "--report",
            "-",
            "-r",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    report = json.loads(dry_run.stdout)
    would = {
        f"{i['metadata']['name'].lower()}=={i['metadata']['version']}" for i in report["install"]
    }
    assert {pin.replace("_", "-") for pin in pins} == {w.replace("_", "-") for w in would}

    # the seed's way back: `pip freeze > requirements.txt` (the app itself as `-e .`) pins the
    # same set again
    (deployment.project / "requirements.txt").write_text(frozen + "-e .\n")
    relocked = compile_lock(
        LocalConnection(), deployment.project, "auto", [], find_python(""), tmp_path / "c"
    )
    assert [str(pin) for pin in parse_pins(relocked)] == pins
