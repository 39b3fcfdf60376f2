"""Bytecode reuse links .pyc files only for the very same source file, never a look-alike."""

from __future__ import annotations

import os
import py_compile
import subprocess
import sys
from pathlib import Path

from shipyard.bytecode import reuse_bytecode, without_bytecode
from shipyard.deploy import compile_only_what_lacks_bytecode
from shipyard.release import compile_step

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


def test_after_reuse_only_the_files_left_are_compiled(tmp_path: Path) -> None:
    old, new = _venv(tmp_path / "old"), _venv(tmp_path / "new")
    (old / SITE / "pkg" / "shared.py").write_text("X = 1\n")
    os.link(old / SITE / "pkg" / "shared.py", new / SITE / "pkg" / "shared.py")
    (new / SITE / "pkg" / "views.py").write_text('G = "new"\n')
    py_compile.compile(str(old / SITE / "pkg" / "shared.py"))
    reuse_bytecode(old, new)
    assert without_bytecode(new) == [new / SITE / "pkg" / "views.py"]
    everything = compile_step(new)
    remaining = compile_only_what_lacks_bytecode(new, everything)
    assert remaining is not None and remaining.argv[1:3] == ("-m", "py_compile")
    assert remaining.argv[3:] == (str(new / SITE / "pkg" / "views.py"),)
    # run it as the venv's python would: then nothing is left to compile
    subprocess.run([sys.executable, *remaining.argv[1:]], check=True)
    assert without_bytecode(new) == [] and compile_only_what_lacks_bytecode(new, everything) is None
    # many files left (a new dependency, say): one compileall over the venv instead
    for n in range(201):
        (new / SITE / "pkg" / f"m{n}.py").write_text("")
    assert compile_only_what_lacks_bytecode(new, everything) == everything
