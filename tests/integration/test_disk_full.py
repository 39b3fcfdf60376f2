"""A full disk under the base dir: a clear error, the serving release untouched, and the
next deploy, once there is room, goes through. The base dir is a small tmpfs of its own."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from faultreport import error_message, record

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = [pytest.mark.slow, pytest.mark.fault]


@contextlib.contextmanager
def _filled(directory: Path) -> Iterator[Path]:
    """Everything left on `directory`'s filesystem taken by one file, for the block."""
    filler = directory / "filler"
    with filler.open("wb") as handle:
        chunk = b"\0" * (1 << 20)
        try:
            while True:
                handle.write(chunk)
                handle.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    try:
        yield filler
    finally:
        filler.unlink()


@pytest.fixture
def small_base(deployment: Deployment) -> Iterator[Deployment]:
    """The deployment's base dir on a tmpfs with room for one release and a few more."""
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=160m,mode=0755", "tmpfs", str(deployment.base)],
        check=True,
    )
    try:
        yield deployment
    finally:
        from shipyard.host.layout import HostLayout
        from shipyard.host.runtime import stop_runtime

        stop_runtime(HostLayout(deployment.base))
        subprocess.run(["umount", "-l", str(deployment.base)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_full_disk_fails_the_deploy_clearly_and_the_live_release_keeps_serving(
    small_base: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = small_base
    project = str(deployment.project)
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    deployment.set_greeting("after the disk was full")
    with _filled(deployment.base):
        code, out, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
        assert code == 1, (out, err)
        assert "no space left" in err and str(deployment.base) in err, err
        assert "Traceback" not in err and "internal error" not in err
        status, body, _ = deployment.get("/")
        assert status == 200 and "after the disk was full" not in body
        record(
            "the base dir's disk full during a deploy",
            target="local",
            exit_code=code,
            message=error_message(err),
            serving_after="the previous release",
        )
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    assert "after the disk was full" in deployment.get("/")[1]
