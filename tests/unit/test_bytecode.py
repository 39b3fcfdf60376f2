"""Bytecode reuse links .pyc files only for the very same source file, never a look-alike."""

from __future__ import annotations

import os
import py_compile
from pathlib import Path

from shipyard.bytecode import reuse_bytecode

SITE = "lib/python3.11/site-packages"


def _venv(root: Path) -> Path:
    (root / SITE / "pkg").mkdir(parents=True)
    return root


def test_only_unchanged_files_get_the_old_bytecode(tmp_path: Path) -> None:
    old, new = _venv(tmp_path / "old"), _venv(tmp_path / "new")
    shared = old / SITE / "pkg" / "shared.py"
    shared.write_text("X = 1\n")
    os.link(shared, new / SITE / "pkg" / "shared.py")  # as uv links from its cache
    # a changed module of the same length and the same pinned mtime as the old one
    for venv, text in ((old, 'G = "round 1"\n'), (new, 'G = "round 2"\n')):
        views = venv / SITE / "pkg" / "views.py"
        views.write_text(text)
        os.utime(views, (1451606400, 1451606400))
    for name in ("shared.py", "views.py"):
        py_compile.compile(str(old / SITE / "pkg" / name))

    assert reuse_bytecode(old, new) == 1
    cached = sorted(p.name.split(".")[0] for p in (new / SITE / "pkg" / "__pycache__").iterdir())
    assert cached == ["shared"]
    assert reuse_bytecode(old, new) == 0  # already there: nothing linked twice


def test_nothing_to_reuse_across_python_versions(tmp_path: Path) -> None:
    old = _venv(tmp_path / "old")
    new = tmp_path / "new"
    (new / "lib/python3.12/site-packages").mkdir(parents=True)
    assert reuse_bytecode(old, new) == 0
