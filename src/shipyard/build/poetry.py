"""A Poetry project's pins: its top-level dependencies, held to the versions poetry.lock pins.

uv resolves the top-level requirements with every locked version as a constraint, so the
release gets exactly the lock's versions, with markers evaluated for the hosts' Python and
platform (as `poetry install` would there).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from shipyard.errors import BuildError

_LOCAL_SOURCES = ("directory", "file", "git", "url")


def poetry_inputs(project: Path, lock: Path) -> tuple[str, str]:
    """(requirements, constraints) texts for uv from pyproject.toml and poetry.lock."""
    pyproject = project / "pyproject.toml"
    data = _toml(pyproject)
    locked = _toml(lock)
    project_name = str(data.get("project", {}).get("name") or _poetry(data).get("name") or "")
    requirements = [str(r) for r in data.get("project", {}).get("dependencies", [])]
    for name, value in _poetry(data).get("dependencies", {}).items():
        if name.lower() == "python":
            continue
        requirements += _poetry_requirements(name, value, pyproject)
    constraints = []
    for package in locked.get("package", []):
        source = package.get("source", {}).get("type", "")
        if source in _LOCAL_SOURCES or package.get("name") == project_name:
            continue
        constraints.append(f"{package['name']}=={package['version']}")
    if not constraints and requirements:
        raise BuildError(
            f"{lock} pins no packages, yet {pyproject} declares dependencies.",
            hint="Run 'poetry lock' in the project.",
        )
    return "".join(f"{r}\n" for r in requirements), "".join(f"{c}\n" for c in constraints)


def _poetry(data: dict[str, Any]) -> dict[str, Any]:
    tool: dict[str, Any] = data.get("tool", {})
    return dict(tool.get("poetry", {}))


def _poetry_requirements(name: str, value: object, pyproject: Path) -> list[str]:
    """A [tool.poetry.dependencies] entry as requirement names (the lock gives the versions)."""
    entries = value if isinstance(value, list) else [value]
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            found.append(name)
            continue
        if entry.get("optional"):
            continue
        if any(key in entry for key in ("path", "git", "url")):
            raise BuildError(
                f"{pyproject}: [tool.poetry.dependencies] {name} is a local path, git or URL "
                "dependency, not a version pinned from a package index; shipyard installs the "
                "hosts offline from wheels of pinned versions and does not build those into a "
                "release.",
                hint="Publish the package to an index (a private one works) and depend on a "
                "version, or move its code into the app.",
            )
        extras = entry.get("extras") or []
        requirement = f"{name}[{','.join(extras)}]" if extras else name
        if entry.get("markers"):
            requirement += f" ; {entry['markers']}"
        found.append(requirement)
    return found


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BuildError(f"{path} is missing.", hint="A Poetry project needs both files.") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BuildError(
            f"cannot read {path}: {err}.", hint="Fix the file, or run 'poetry lock'."
        ) from None
