"""Which files are the source, and their hash."""

from __future__ import annotations

from pathlib import Path

from shipyard.build.source import hash_files, source_files


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


def test_the_hash_changes_with_content_and_names_only(tmp_path: Path) -> None:
    _tree(tmp_path, ["a.py", "b.py"])
    files = source_files(tmp_path, [])
    first = hash_files(tmp_path, files)
    assert hash_files(tmp_path, files) == first
    (tmp_path / "b.py").write_text("changed")
    assert hash_files(tmp_path, files) != first
