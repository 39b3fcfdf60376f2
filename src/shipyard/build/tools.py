"""The build toolchain: uv, pip, and the Python the release runs on."""

from __future__ import annotations

import os
import shutil
from functools import cache
from pathlib import Path

from shipyard.errors import BuildError
from shipyard.host.steps import Command, Result


@cache
def uv_bin() -> str:
    """uv: the one a host's runtime keeps (SHIPYARD_UV), else the uv package beside shipyard."""
    if (given := os.environ.get("SHIPYARD_UV")) and os.access(given, os.X_OK):
        return given
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BuildError(
                "uv is not installed next to shipyard.",
                hint="Reinstall shipyard: pip install shipyard",
            ) from None
        return found


def uv_env() -> dict[str, str]:
    """Never let uv download a Python interpreter or ask for input."""
    return {"UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1", "NO_COLOR": "1"}


def uv(*args: str, cwd: Path | None = None, timeout: float = 600) -> Command:
    return Command((uv_bin(), *args), cwd=str(cwd) if cwd else None, env=uv_env(), timeout=timeout)


def fail(result: Result, what: str, hint: str | None = None) -> BuildError:
    return BuildError(
        f"{what} (exit {result.exit_code}): {result.command}\n{result.output_tail(40)}", hint=hint
    )
