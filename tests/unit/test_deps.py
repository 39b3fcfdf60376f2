"""Reading pinned locks and choosing where pins come from."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipyard.build.deps import Pin, parse_pins, requirement_source
from shipyard.errors import BuildError, SpecError


def test_parse_pins_reads_uv_output_and_skips_comments_and_foreign_markers() -> None:
    text = (
        "blinker==1.9.0\n"
        "Flask==3.1.3\n"
        "    # via -r server.in\n"
        "pywin32==306 ; sys_platform == 'win32'\n"
        "--find-links /x\n"
        "markupsafe==3.0.2 # via jinja2\n"
    )
    assert parse_pins(text) == [
        Pin("blinker", "1.9.0"),
        Pin("flask", "3.1.3"),
        Pin("markupsafe", "3.0.2"),
    ]


def test_unpinned_requirement_is_an_error() -> None:
    with pytest.raises(BuildError, match="not pinned"):
        parse_pins("flask>=3\n")


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["uv.lock", "requirements.txt", "pyproject.toml"], "uv.lock"),
        (["requirements.txt", "pyproject.toml"], "requirements"),
        (["pyproject.toml"], "pyproject"),
        ([], "none"),
    ],
)
def test_auto_source_prefers_the_lock(tmp_path: Path, files: list[str], expected: str) -> None:
    for name in files:
        (tmp_path / name).write_text('[project]\nname = "x"\n' if name == "pyproject.toml" else "")
    assert requirement_source(tmp_path, "auto")[0] == expected


def test_a_pyproject_of_tool_settings_only_declares_no_dependencies(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.ruff]\nline-length = 100\n")
    assert requirement_source(tmp_path, "auto") == ("none", None)


def test_a_named_requirements_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"requirements/prod\.txt"):
        requirement_source(tmp_path, "requirements/prod.txt")
