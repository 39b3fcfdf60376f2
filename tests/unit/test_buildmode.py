"""Wheel or source tree: the decision from a project's packaging files alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.errors import SpecError
from shipyard.spec.buildmode import choose_build
from shipyard.spec.model import parse_spec

SETUPTOOLS = '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
PROJECT = '[project]\nname = "app"\nversion = "1"\n'


@pytest.mark.parametrize(
    ("texts", "uv_lock", "mode", "why"),
    [
        # a requirements.txt and a few modules: nothing says how to package them
        ({}, False, "tree", "no packaging metadata"),
        ({"pyproject.toml": "[tool.ruff]\nline-length = 100\n"}, False, "tree", "no packaging"),
        # Django sites keep flake8's settings in setup.cfg: that packages nothing
        ({"setup.cfg": "[flake8]\nmax-line-length = 100\n"}, False, "tree", "no packaging"),
        ({"pyproject.toml": SETUPTOOLS}, False, "wheel", "pyproject.toml has [build-system]"),
        ({"pyproject.toml": PROJECT}, False, "wheel", "pyproject.toml has [project]"),
        # uv's app projects: [project], no build backend, a lock; uv installs no package
        ({"pyproject.toml": PROJECT}, True, "tree", "and uv.lock"),
        ({"pyproject.toml": PROJECT + SETUPTOOLS}, True, "wheel", "[build-system]"),
        (
            {"pyproject.toml": SETUPTOOLS + "[tool.uv]\npackage = false\n"},
            False,
            "tree",
            "[tool.uv] package = false",
        ),
        (
            {"pyproject.toml": "[tool.poetry]\npackage-mode = false\n"},
            False,
            "tree",
            "package-mode = false",
        ),
        ({"setup.py": "from setuptools import setup\nsetup()\n"}, False, "wheel", "setup.py"),
        ({"setup.cfg": "[metadata]\nname = app\n"}, False, "wheel", "setup.cfg has [metadata]"),
    ],
)
def test_auto_follows_the_packaging_files(
    texts: dict[str, str], uv_lock: bool, mode: str, why: str
) -> None:
    choice = choose_build("auto", texts, uv_lock)
    assert choice.mode == mode
    assert why in choice.reason
    expected = "deploying the source tree" if mode == "tree" else "deploying it as a wheel"
    assert choice.reason.endswith(expected)


@pytest.mark.parametrize("setting", ["tree", "wheel"])
def test_the_spec_s_mode_wins(setting: str) -> None:
    packaged = {"pyproject.toml": PROJECT + SETUPTOOLS}
    for texts in ({}, packaged):
        choice = choose_build(setting, texts, False)
        assert choice.mode == setting
        assert choice.reason.startswith(f"build.mode = '{setting}' in the spec")


def test_a_broken_pyproject_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError, match=r"/p/pyproject.toml is not valid TOML"):
        choose_build("auto", {"pyproject.toml": "[project"}, False, "/p/pyproject.toml")


def test_an_unknown_mode_is_named_with_what_is_allowed(tmp_path: Path) -> None:
    raw = {"name": "site", "entry": "app:app", "build": {"mode": "sdist"}}
    with pytest.raises(SpecError) as err:
        parse_spec(raw, tmp_path / "shipyard.toml")
    assert "  build.mode: Input should be 'auto', 'tree' or 'wheel' (got 'sdist')" in str(err.value)


@pytest.mark.parametrize(
    ("dirs", "files"),
    [(["data"], ["data/app.db"]), (["uploads", "uploads"], []), ([], ["db.sqlite3", "db.sqlite3"])],
)
def test_persistent_paths_may_not_overlap(
    tmp_path: Path, dirs: list[str], files: list[str]
) -> None:
    raw = {"name": "site", "entry": "app:app", "persistent": dirs, "persistent_files": files}
    with pytest.raises(SpecError, match=r"persistent paths '.+' and '.+' overlap"):
        parse_spec(raw, tmp_path / "shipyard.toml")
