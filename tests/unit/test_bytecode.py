"""Bytecode reuse links .pyc files only for the very same source file, never a look-alike."""

from __future__ import annotations

import os
import py_compile
import sys
from pathlib import Path

import pytest

from shipyard.bytecode import reuse_bytecode, without_bytecode
from shipyard.deploy import compile_files, few_lacking_bytecode
from shipyard.errors import DeployError
from shipyard.hosts.base import Command, Result

SITE = f"lib/python3.{sys.version_info.minor}/site-packages"  # this Python's


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
    views = new / SITE / "pkg" / "views.py"
    views.write_text('G = "new"\n')
    py_compile.compile(str(old / SITE / "pkg" / "shared.py"))
    reuse_bytecode(old, new)
    assert without_bytecode(new) == [views]
    assert few_lacking_bytecode(new) == [views]
    # this interpreter is the venv's Python (SITE is this Python's): compiled in process,
    # with no command run
    conn = Refusing()
    compile_files(conn, new, [views])
    assert without_bytecode(new) == [] and few_lacking_bytecode(new) == []
    # many files left (a new dependency, say): one compileall over the venv instead
    for n in range(201):
        (new / SITE / "pkg" / f"m{n}.py").write_text("")
    assert few_lacking_bytecode(new) is None


def test_a_venv_of_another_python_is_compiled_by_its_own_python(tmp_path: Path) -> None:
    other = f"lib/python3.{sys.version_info.minor + 1}/site-packages"
    module = tmp_path / other / "pkg" / "views.py"
    module.parent.mkdir(parents=True)
    module.write_text("G = 1\n")
    conn = Recording()
    compile_files(conn, tmp_path, [module])
    assert conn.commands == [(str(tmp_path / "bin" / "python"), "-m", "py_compile", str(module))]
    assert not (module.parent / "__pycache__").exists()


def test_a_module_that_does_not_compile_is_a_clear_error(tmp_path: Path) -> None:
    venv = _venv(tmp_path / "venv")
    broken = venv / SITE / "pkg" / "broken.py"
    broken.write_text("def f(:\n")
    with pytest.raises(DeployError, match=r"cannot compile .*broken\.py, line 1: SyntaxError"):
        compile_files(Refusing(), venv, [broken])


class Recording:
    """A connection that records the commands it is given and answers them all with success."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def run(self, command: Command) -> Result:
        self.commands.append(command.argv)
        return Result("test", command, 0, "", "", 0.0)


class Refusing(Recording):
    def run(self, command: Command) -> Result:
        raise AssertionError(f"no command was expected, got {command}")
