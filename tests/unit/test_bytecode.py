"""Which files of a venv lack bytecode, and compiling the few that do."""

from __future__ import annotations

import py_compile
import sys
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import pytest

from shipyard.errors import DeployError
from shipyard.host.bytecode import compile_files, few_lacking_bytecode, without_bytecode
from shipyard.host.steps import Command, Result, Symlink, Upload

SITE = f"lib/python3.{sys.version_info.minor}/site-packages"  # this Python's


def _venv(root: Path) -> Path:
    (root / SITE / "pkg").mkdir(parents=True)
    return root


def test_only_the_files_left_are_compiled(tmp_path: Path) -> None:
    new = _venv(tmp_path / "new")
    (new / SITE / "pkg" / "shared.py").write_text("X = 1\n")
    py_compile.compile(str(new / SITE / "pkg" / "shared.py"))  # as a bundle left it
    views = new / SITE / "pkg" / "views.py"
    views.write_text('G = "new"\n')
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
    """A connection that records the commands it is given and answers them all with success;
    compiling touches no file over it."""

    host = "test"

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def put(self, upload: Upload) -> None:
        raise AssertionError(f"no upload was expected, got {upload}")

    def link(self, symlink: Symlink) -> None:
        raise AssertionError(f"no link was expected, got {symlink}")

    def read(self, path: PurePosixPath) -> bytes | None:
        raise AssertionError(f"no read was expected, got {path}")

    def remove(self, path: PurePosixPath) -> None:
        raise AssertionError(f"no removal was expected, got {path}")

    def make_dirs(self, paths: Sequence[PurePosixPath]) -> None:
        raise AssertionError(f"no directories were expected, got {paths}")

    def close(self) -> None:
        pass

    def run(self, command: Command) -> Result:
        self.commands.append(command.argv)
        return Result("test", command, 0, "", "", 0.0)


class Refusing(Recording):
    def run(self, command: Command) -> Result:
        raise AssertionError(f"no command was expected, got {command}")
