"""Building the example's artifact for hosts of another platform: aarch64 wheels, fetched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from shipyard.build import artifact as artifacts
from shipyard.build.platforms import Platform, local_platform
from shipyard.errors import BuildError
from shipyard.host.artifact import Artifact
from shipyard.host.local import LocalConnection
from shipyard.project.spec_file import load_spec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask-factory"
ARM = Platform("linux-aarch64", "glibc 2.36")


def _markupsafe(artifact: Artifact) -> str:
    found = [w.file for w in artifact.manifest.wheels if w.file.lower().startswith("markupsafe")]
    assert len(found) == 1, artifact.manifest.wheels
    return str(found[0])


def test_an_artifact_for_aarch64_hosts_carries_aarch64_wheels(tmp_path: Path, cache: Path) -> None:
    project = tmp_path / "app"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    spec = load_spec(project)
    conn = LocalConnection()
    here = artifacts.build(
        conn, project, spec, cache, artifacts.gather_inputs(conn, project, spec, cache)
    )
    there = artifacts.build(
        conn, project, spec, cache, artifacts.gather_inputs(conn, project, spec, cache, ARM)
    )
    assert there.id != here.id
    assert there.manifest.platform == "linux-aarch64 (glibc 2.36)" and here.manifest.platform == ""
    assert "aarch64" in _markupsafe(there) and local_platform().arch in _markupsafe(here)
    # the rest is the same: pure-Python wheels and the app's own
    assert here.manifest.app_wheel == there.manifest.app_wheel
    pure = {w.file for w in here.manifest.wheels if w.file.endswith("-none-any.whl")}
    assert pure and pure <= {w.file for w in there.manifest.wheels}


def test_a_platform_shipyard_cannot_resolve_for_is_a_clear_error(
    tmp_path: Path, cache: Path
) -> None:
    project = tmp_path / "app"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    spec = load_spec(project)
    musl = Platform("linux-x86_64", "")
    with pytest.raises(BuildError, match=r"cannot resolve .* for linux-x86_64 from here"):
        artifacts.gather_inputs(LocalConnection(), project, spec, cache, musl)
