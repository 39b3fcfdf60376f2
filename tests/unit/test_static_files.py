"""Which files of a static directory a release serves (build/static.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipyard.build.source import source_files, with_dirs
from shipyard.build.static import is_never_served, static_files

HIDDEN = [
    "static/.env",
    "static/.git/config",
    "static/.htpasswd",
    "static/app.js~",
    "static/#app.js#",
    "static/.app.js.swp",
    "static/js/app.js.bak",
    "static/js/app.js.orig",
    "static/js/.DS_Store",
]
SERVED = ["static/style.css", "static/js/app.js", "static/img/logo.png"]


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def _names(paths: list[Path]) -> set[str]:
    return {p.as_posix() for p in paths}


@pytest.mark.parametrize(
    ("name", "hidden"),
    [
        (".env", True),
        (".well-known", True),
        ("a.js~", True),
        ("#a.js#", True),
        ("a.swp", True),
        ("a.css.bak", True),
        ("a.orig", True),
        ("style.css", False),
        ("a~b.css", False),
        ("backup.css", False),
    ],
)
def test_hidden_names_and_editor_leftovers_are_never_served(name: str, hidden: bool) -> None:
    assert is_never_served(name) is hidden


def test_outside_git_hidden_files_backups_and_ignored_files_are_left_out(tmp_path: Path) -> None:
    _tree(tmp_path, [*HIDDEN, *SERVED, "static/debug.log", "static/__pycache__/x.pyc"])
    (tmp_path / ".gitignore").write_text("*.log\n")
    assert _names(static_files(tmp_path, "static")) == set(SERVED)


@pytest.mark.parametrize("tracked", [True, False])
def test_in_git_hidden_files_are_left_out_tracked_or_not(tmp_path: Path, tracked: bool) -> None:
    _tree(tmp_path, [*HIDDEN, *SERVED, "static/debug.log"])
    (tmp_path / ".gitignore").write_text("*.log\n")
    _git(tmp_path, "init", "-q")
    if tracked:
        _git(tmp_path, "add", "-f", ".")
        _git(tmp_path, "commit", "-q", "-m", "all")
    assert _names(static_files(tmp_path, "static")) == set(SERVED) | (
        {"static/debug.log"} if tracked else set()  # a tracked file is never ignored
    )


@pytest.mark.parametrize("git", [True, False])
def test_a_directory_git_ignores_as_a_whole_is_served_less_its_hidden_files(
    tmp_path: Path, git: bool
) -> None:
    """Django's collectstatic output and a bundler's dist/ are ignored and must be served."""
    _tree(
        tmp_path,
        [
            "manage.py",
            "staticfiles/staticfiles.json",
            "staticfiles/admin/base.css",
            "staticfiles/.env",
            "staticfiles/admin/base.css~",
            "app/static/s.css",
            "app/static/dist/bundle.js",
            "app/static/dist/bundle.js.swp",
            "app/static/local.js",
        ],
    )
    (tmp_path / ".gitignore").write_text("staticfiles/\napp/static/dist/\napp/static/local.js\n")
    if git:
        _git(tmp_path, "init", "-q")
        _git(tmp_path, "add", ".")
    assert _names(static_files(tmp_path, "staticfiles")) == {
        "staticfiles/staticfiles.json",
        "staticfiles/admin/base.css",
    }
    assert _names(static_files(tmp_path, "app/static")) == {
        "app/static/s.css",
        "app/static/dist/bundle.js",
    }


def test_a_tree_holds_no_hidden_file_of_its_static_dirs(tmp_path: Path) -> None:
    """An app may serve its static dir itself (WhiteNoise), from its copy of the tree."""
    _tree(tmp_path, ["manage.py", "staticfiles/site.css", "staticfiles/.env", "static/.htpasswd"])
    (tmp_path / ".gitignore").write_text("staticfiles/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-f", "static/.htpasswd")
    files = with_dirs(tmp_path, source_files(tmp_path, []), ["staticfiles", "static"])
    assert _names(files) == {".gitignore", "manage.py", "staticfiles/site.css"}
