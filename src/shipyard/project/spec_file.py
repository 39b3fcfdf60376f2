"""Reading a project's spec: shipyard.toml, or [tool.shipyard] in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from shipyard.errors import SpecError
from shipyard.spec.model import SPEC_FILE, Spec, parse_spec


def find_spec_file(project: Path) -> tuple[Path, dict[str, Any]]:
    """Return the file holding the spec and its raw table."""
    spec_path = project / SPEC_FILE
    if spec_path.is_file():
        return spec_path, _read_toml(spec_path)
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("shipyard")
        if isinstance(table, dict):
            return pyproject, table
    raise SpecError(
        f"no {SPEC_FILE} (or [tool.shipyard] in pyproject.toml) in {project}.",
        hint="Run 'shipyard init' there to detect the app and write one.",
    )


def load_spec(project: Path) -> Spec:
    """Load and validate the spec of the project at `project`."""
    path, raw = find_spec_file(project)
    return parse_spec(raw, path)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SpecError(
            f"{path} is not valid TOML: {err}.", hint="Fix the syntax and try again."
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(f"cannot read {path}: {err}.") from None
