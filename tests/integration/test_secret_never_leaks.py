"""A planted secret never shows: not in any command's output, any log, any file under the
base dir but its two 0600 stores, any artifact or cached build, nor any process's command
line (the `ps` listing) while the app runs."""

from __future__ import annotations

import io
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

# Where a secret is meant to be: the app's config (set with `config set`) and the env file of
# each slot, which its processes read; both 0600.
STORES = ("shared/config.json", "shared/env.blue", "shared/env.green")


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def _holding(paths: list[Path], needle: bytes) -> list[str]:
    found = []
    for path in paths:
        try:
            if needle in path.read_bytes():
                found.append(str(path))
        except OSError:
            continue  # a socket, or a file gone meanwhile
    return found


def _command_lines(needle: bytes) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if needle in cmdline:
                shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{proc.name}: {shown}")
    return found


def test_a_planted_secret_is_never_printed_logged_cached_or_on_a_command_line(
    deployment: Deployment,
    cache: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    planted = "PLANTED-" + secrets.token_hex(12)
    spec = deployment.project / "shipyard.toml"
    spec.write_text(spec.read_text() + 'SHIPYARD_TEST_TOKEN = "required"\n')  # under [secrets]
    project = str(deployment.project)
    outputs: list[str] = []

    def cli(*args: str, stdin: str | None = None, expect: int = 0) -> None:
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code, out, err = deployment.cli(*args, capsys=capsys)
        assert code == expect, (args, out, err)
        outputs.extend([out, err])

    cli("config", "set", "--dir", project, "SHIPYARD_TEST_TOKEN", stdin=planted + "\n")
    cli("deploy", project, "--skip-tests")
    deployment.set_greeting("Hello after the secret")
    cli("deploy", project, "--skip-tests", "--dry-run")
    cli("status", project)
    cli("releases", project)
    cli("logs", project)
    cli("config", "list", "--dir", project)
    cli("config", "list", "--dir", project, "--json")
    # a new value: the restart rewrites the env files, and the old value must go from them too
    rotated = "PLANTED-" + secrets.token_hex(12)
    cli("config", "set", "--dir", project, "SHIPYARD_TEST_TOKEN", stdin=rotated)
    cli("deploy", project, "--skip-tests", "--dry-run")
    cli("deploy", project, "--skip-tests")

    for value in (planted, rotated):
        needle = value.encode()
        assert not [text for text in outputs if value in text]
        assert not _command_lines(needle)
        assert not _holding(_files(cache), needle)
        leaked = _holding(_files(deployment.base), needle)
        app_root = deployment.base / "flaskr"
        assert not [p for p in leaked if Path(p).relative_to(app_root).as_posix() not in STORES]
    # the old value is gone even from the stores; the new one is only there, closed to others
    stores = [deployment.base / "flaskr" / rel for rel in STORES]
    assert not _holding([p for p in stores if p.exists()], planted.encode())
    held = _holding([p for p in stores if p.exists()], rotated.encode())
    assert held, "the app's config and live env file hold the secret"
    for path in held:
        assert os.stat(path).st_mode & 0o077 == 0, path
    # and the app does get it
    assert (
        "SHIPYARD_TEST_TOKEN" in (deployment.base / "flaskr" / "shared" / "config.json").read_text()
    )
