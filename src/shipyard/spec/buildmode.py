"""Whether a project is deployed as a wheel or as its source tree: decided from its packaging
files' text alone (pure; the callers read the files).

Most web apps (a Django site, a requirements.txt and a few modules) have no packaging
metadata: built as a wheel, setuptools' discovery fails on their several top-level modules,
and the files they open by relative path are not in the wheel. Those are deployed as their
tree and run in place; a project that says how it is packaged keeps the wheel.
"""

from __future__ import annotations

import configparser
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shipyard.errors import SpecError

# The files the decision reads, at the project's root.
PACKAGING_FILES = ("pyproject.toml", "setup.py", "setup.cfg")

Mode = Literal["tree", "wheel"]


@dataclass(frozen=True)
class BuildChoice:
    mode: Mode
    reason: str  # why, as `init` and `build` say it: "no packaging metadata: ..."

    @property
    def is_tree(self) -> bool:
        return self.mode == "tree"


def choose_build(
    setting: str, texts: Mapping[str, str], has_uv_lock: bool, where: str = "pyproject.toml"
) -> BuildChoice:
    """The build mode for the spec's `build.mode` and the project's packaging files.

    Args:
        setting: 'auto', 'tree' or 'wheel'.
        texts: the content of each of PACKAGING_FILES the project has.
        has_uv_lock: the project has a uv.lock (uv treats a [project] without
            [build-system] as an app, not a package).
        where: the pyproject.toml's path, for an error.
    """
    if setting in ("tree", "wheel"):
        mode: Mode = "tree" if setting == "tree" else "wheel"
        what = "the source tree" if mode == "tree" else "it as a wheel"
        return BuildChoice(mode, f"build.mode = {setting!r} in the spec: deploying {what}")
    pyproject = _toml(texts["pyproject.toml"], where) if "pyproject.toml" in texts else {}
    tool: dict[str, Any] = pyproject.get("tool", {})
    uv_package = tool.get("uv", {}).get("package")
    if isinstance(uv_package, bool):
        return _said(
            "pyproject.toml has [tool.uv] package = " + str(uv_package).lower(), uv_package
        )
    if tool.get("poetry", {}).get("package-mode") is False:
        return _said("pyproject.toml has [tool.poetry] package-mode = false", False)
    if "build-system" in pyproject:
        return _said("pyproject.toml has [build-system]", True)
    if "project" in pyproject:
        if has_uv_lock:  # what uv does: no build backend named, so not a package
            return _said("pyproject.toml has [project] but no [build-system], and uv.lock", False)
        return _said("pyproject.toml has [project]", True)
    if "setup.py" in texts:
        return _said("setup.py found", True)
    if "setup.cfg" in texts and _setup_cfg_packages(texts["setup.cfg"]):
        return _said("setup.cfg has [metadata] or [options]", True)
    return BuildChoice(
        "tree",
        "no packaging metadata (no [project] or [build-system] in pyproject.toml, no setup.py, "
        "no setup.cfg [metadata]): deploying the source tree",
    )


def _said(why: str, wheel: bool) -> BuildChoice:
    if wheel:
        return BuildChoice("wheel", f"{why}: deploying it as a wheel")
    return BuildChoice("tree", f"{why}: deploying the source tree")


def _toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{where} is not valid TOML: {err}.", hint="Fix the syntax.") from None


def _setup_cfg_packages(text: str) -> bool:
    """setup.cfg also holds tools' settings only ([flake8], [tool:pytest]): those package
    nothing."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return True  # setuptools would read it, and fail on it: the wheel says so
    return parser.has_section("metadata") or parser.has_section("options")
