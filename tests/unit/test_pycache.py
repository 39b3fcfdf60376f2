"""The test gate's bytecode under the cache: checked-hash pycs of the project's modules, made
and then imported by real interpreters (nothing is mocked), and never one that an edit within
the same second at the same size would leave stale."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from shipyard.build.pycache import bytecode_env, cache_path


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    (project / "app").mkdir(parents=True)
    (project / "app" / "__init__.py").write_text("")
    (project / "app" / "views.py").write_text('GREETING = "one"\n')
    (project / "tests").mkdir()
    (project / "tests" / "test_views.py").write_text(
        "from app.views import GREETING\n\ndef test_greeting():\n    assert GREETING\n"
    )
    return project


FILES = [Path("app/__init__.py"), Path("app/views.py"), Path("tests/test_views.py")]


def _run(project: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project), **env},
        capture_output=True,
        text=True,
        check=True,
    )


def _flags(pyc: Path) -> int:
    return int.from_bytes(pyc.read_bytes()[4:8], "little")


def test_the_projects_modules_are_compiled_checked_against_their_source(tmp_path: Path) -> None:
    project, prefix = _project(tmp_path), tmp_path / "pycache"
    env = bytecode_env(prefix, project, FILES, same_python=True)
    assert env == {"PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": ""}
    pyc = cache_path(prefix, project / "app" / "views.py")
    assert _flags(pyc) == 0b11
    source = (project / "app" / "views.py").read_bytes()
    assert pyc.read_bytes()[8:16] == importlib.util.source_hash(source)
    _run(project, env, "-c", "import app.views")
    assert not list(project.rglob("__pycache__"))  # the project's tree stays as it was


def test_an_edit_in_the_same_second_at_the_same_size_is_never_served_stale(
    tmp_path: Path,
) -> None:
    project, prefix = _project(tmp_path), tmp_path / "pycache"
    views = project / "app" / "views.py"
    env = bytecode_env(prefix, project, FILES, same_python=True)
    _run(project, env, "-c", "import app.views")
    stamp = views.stat()
    views.write_text('GREETING = "two"\n')  # the same size
    os.utime(views, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # and the same time
    env = bytecode_env(prefix, project, FILES, same_python=True)
    out = _run(project, env, "-c", "import app.views; print(app.views.GREETING)")
    assert out.stdout.strip() == "two"


def test_pytests_rewritten_module_goes_when_its_source_changes(tmp_path: Path) -> None:
    project, prefix = _project(tmp_path), tmp_path / "pycache"
    env = bytecode_env(prefix, project, FILES, same_python=True)
    _run(project, env, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    test_file = project / "tests" / "test_views.py"
    rewritten = list(cache_path(prefix, test_file).parent.glob("test_views.*-pytest-*.pyc"))
    assert len(rewritten) == 1
    bytecode_env(prefix, project, FILES, same_python=True)
    assert rewritten[0].exists()  # unchanged: kept
    test_file.write_text(test_file.read_text().replace("assert GREETING", "assert not GREETING"))
    env = bytecode_env(prefix, project, FILES, same_python=True)
    assert not rewritten[0].exists()
    failed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(project), **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == 1 and "assert not" in failed.stdout


def test_bytecode_of_a_module_outside_the_artifact_is_not_trusted(tmp_path: Path) -> None:
    project, prefix = _project(tmp_path), tmp_path / "pycache"
    (project / "scratch.py").write_text("X = 1\n")
    env = bytecode_env(prefix, project, FILES, same_python=True)
    _run(project, env, "-c", "import scratch")
    made = cache_path(prefix, project / "scratch.py")
    assert made.exists() and _flags(made) == 0  # the interpreter's own: by timestamp
    bytecode_env(prefix, project, FILES, same_python=True)
    assert not made.exists()


def test_tests_on_another_python_write_no_bytecode_at_all(tmp_path: Path) -> None:
    project, prefix = _project(tmp_path), tmp_path / "pycache"
    env = bytecode_env(prefix, project, FILES, same_python=False)
    assert env == {"PYTHONDONTWRITEBYTECODE": "1"}
    assert not prefix.exists()
