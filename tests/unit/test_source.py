"""Which files are the source, and their hash."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from shipyard.build.source import (
    TREE_EXCLUDED,
    copy_files,
    hash_files,
    source_files,
    with_dirs,
)


def _tree(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)


def test_environments_caches_and_dev_data_are_not_source(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        [
            "app/__init__.py",
            "app/static/s.css",
            "pyproject.toml",
            ".venv/bin/python",
            "app/__pycache__/x.pyc",
            "instance/app.sqlite",
            "dist/app.whl",
            "node_modules/m/i.js",
            "app.egg-info/PKG-INFO",
            "secret.log",
        ],
    )
    files = {p.as_posix() for p in source_files(tmp_path, ["*.log"])}
    assert files == {"app/__init__.py", "app/static/s.css", "pyproject.toml"}


def test_venvs_and_build_output_go_but_a_package_of_their_name_stays(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        [
            "myapp/__init__.py",
            "myapp/env/__init__.py",  # the app's own subpackage, not a venv
            "myapp/build/steps.py",
            "env/bin/python",
            "build/lib/myapp/__init__.py",
            "backend/.env-tools/pyvenv.cfg",  # a venv by its marker, whatever its name
            "backend/.env-tools/lib/site.py",
        ],
    )
    expected = {"myapp/__init__.py", "myapp/env/__init__.py", "myapp/build/steps.py"}
    assert {p.as_posix() for p in source_files(tmp_path, [])} == expected
    _git(tmp_path, "init", "-q")  # listed by git (nothing ignored), filtered the same
    assert {p.as_posix() for p in source_files(tmp_path, [])} == expected


def test_the_hash_changes_with_content_and_names_only(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.py", "b.py"])
    files = source_files(tmp_path, [])
    first = hash_files(tmp_path, files)
    assert hash_files(tmp_path, files) == first
    (tmp_path / "b.py").write_text("changed")
    assert hash_files(tmp_path, files) != first


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


FLAT_APP = [
    "app.py",
    "helpers.py",
    "worker.py",
    "templates/index.html",
    "motd.txt",
    "requirements.txt",
    "uploads/.gitkeep",
    "db.sqlite3",
    "app.log",
    ".env",
    "staticfiles/app.css",
    "build/lib/app.py",
    "__pycache__/app.cpython-311.pyc",
]


def test_a_git_work_tree_is_what_git_lists_less_the_app_s_data(tmp_path: Path) -> None:
    _tree(tmp_path, FLAT_APP)
    (tmp_path / ".gitignore").write_text("*.log\ndb.sqlite3\nstaticfiles/\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "app.py", "helpers.py", "templates", "requirements.txt", "uploads")
    _git(tmp_path, "commit", "-q", "-m", "first")
    # worker.py and motd.txt are new, not yet added: git lists them (not ignored), so they ship
    files = {p.as_posix() for p in source_files(tmp_path, [*TREE_EXCLUDED], ["uploads"])}
    assert files == {
        ".gitignore",
        "app.py",
        "helpers.py",
        "worker.py",
        "motd.txt",
        "requirements.txt",
        "templates/index.html",
    }
    # a file deleted from the work tree but still in the index is not there to ship
    (tmp_path / "helpers.py").unlink()
    assert "helpers.py" not in {p.as_posix() for p in source_files(tmp_path, [])}


def test_outside_git_the_project_s_gitignore_applies(tmp_path: Path) -> None:
    _tree(tmp_path, [*FLAT_APP, "docs/keep.log", "media/a.png", "sub/media/b.png", "a/b/c.tmp"])
    (tmp_path / ".gitignore").write_text(
        "# the developer's own files\n"
        "*.log\n"
        "!docs/keep.log\n"
        "db.sqlite3\n"
        "staticfiles/\n"
        "/media\n"  # anchored: sub/media stays
        "a/**/*.tmp\n"
        "\n"
    )
    files = {p.as_posix() for p in source_files(tmp_path, [*TREE_EXCLUDED], ["uploads"])}
    assert files == {
        ".gitignore",
        "app.py",
        "helpers.py",
        "worker.py",
        "motd.txt",
        "requirements.txt",
        "templates/index.html",
        "docs/keep.log",
        "sub/media/b.png",
    }


def test_without_a_gitignore_only_build_output_and_caches_are_left_out(tmp_path: Path) -> None:
    _tree(tmp_path, FLAT_APP)
    files = {p.as_posix() for p in source_files(tmp_path, [])}
    assert "build/lib/app.py" not in files and "__pycache__/app.cpython-311.pyc" not in files
    assert {"db.sqlite3", "app.log", "staticfiles/app.css", "uploads/.gitkeep"} <= files
    # the tree deployed as it is keeps a dotenv file and the app's data (keep_out) out
    tree = {p.as_posix() for p in source_files(tmp_path, [*TREE_EXCLUDED], ["db.sqlite3"])}
    assert files - tree == {".env", "db.sqlite3"}


def test_a_dir_only_pattern_leaves_a_file_of_that_name(tmp_path: Path) -> None:
    _tree(tmp_path, ["logs/a.txt", "src/logs", "x.py"])
    (tmp_path / ".gitignore").write_text("logs/\n")
    assert {p.as_posix() for p in source_files(tmp_path, [])} == {".gitignore", "src/logs", "x.py"}


def test_a_tree_keeps_the_static_files_it_collected_even_when_ignored(tmp_path: Path) -> None:
    _tree(tmp_path, ["manage.py", "staticfiles/staticfiles.json", "staticfiles/__pycache__/x"])
    (tmp_path / ".gitignore").write_text("staticfiles/\n")
    files = with_dirs(tmp_path, source_files(tmp_path, []), ["staticfiles"])
    assert [p.as_posix() for p in files] == [
        ".gitignore",
        "manage.py",
        "staticfiles/staticfiles.json",
    ]


def test_copy_files_copies_as_they_are_and_digests_each(tmp_path: Path) -> None:
    project, dest = tmp_path / "p", tmp_path / "d"
    _tree(project, ["a.py", "pkg/b.py", "run.sh"])
    (project / "run.sh").chmod(0o755)
    os.utime(project / "a.py", (1_000_000, 1_000_000))
    digests = copy_files(project, [Path("a.py"), Path("pkg/b.py"), Path("run.sh")], dest)
    assert digests == {
        name: hashlib.sha256(name.encode()).hexdigest() for name in ("a.py", "pkg/b.py", "run.sh")
    }
    assert (dest / "pkg" / "b.py").read_text() == "pkg/b.py"
    assert os.access(dest / "run.sh", os.X_OK)
    assert (dest / "a.py").stat().st_mtime == 1_000_000
