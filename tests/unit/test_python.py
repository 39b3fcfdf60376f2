"""Finding the spec's Python: each candidate is run, and the first that is the version wins.

The candidates are real executables in tmp dirs on a PATH the test sets: a pyenv-like shim
that fails, a script that is another version, and symlinks to the running interpreter.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from shipyard.errors import BuildError
from shipyard.host.python import Places, PythonInfo, find_python, locate_python

MINOR = f"{sys.version_info.major}.{sys.version_info.minor}"
VERSION = ".".join(map(str, sys.version_info[:3]))
COMMAND = f"python{MINOR}"
SHIM = f"""#!/bin/sh
echo "pyenv: version \\`{MINOR}' not installed" >&2
echo "run 'pyenv install {MINOR}' to install it" >&2
exit 1
"""
OLD = "#!/bin/sh\necho /opt/old/bin/python\necho 3.9.18\n"


def _script(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def _good(directory: Path, name: str = COMMAND) -> Path:
    """The running interpreter under the name asked for."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.symlink_to(sys.executable)
    return path


def _uv(directory: Path, found: Path | None) -> Path:
    """A uv whose `python find --managed-python ... MINOR` prints `found`, or fails as uv does."""
    answer = (
        f"echo {found}"
        if found
        else f'echo "error: No interpreter found for Python {MINOR} in managed installations" >&2'
        "; exit 2"
    )
    return _script(
        directory,
        "uv",
        f"""#!/bin/sh
case "$*" in
  "python find --managed-python "*" {MINOR}") {answer};;
  *) echo "unexpected arguments: $*" >&2; exit 9;;
esac
""",
    )


def _places(*path: Path, dirs: tuple[Path, ...] = (), uv: Path | None = None) -> Places:
    return Places(tuple(map(str, path)), tuple(map(str, dirs)), str(uv) if uv else None)


def test_a_failing_shim_and_another_version_are_skipped_for_one_that_runs(
    tmp_path: Path,
) -> None:
    shim = _script(tmp_path / "shims", COMMAND, SHIM)
    old = _script(tmp_path / "old", COMMAND, OLD)
    good = _good(tmp_path / "good")
    found = locate_python(MINOR, _places(shim.parent, old.parent, good.parent))
    assert found == PythonInfo(str(good), VERSION)


def test_the_usual_dirs_come_after_path_and_before_uv(tmp_path: Path) -> None:
    shim = _script(tmp_path / "shims", COMMAND, SHIM)
    good = _good(tmp_path / "usr" / "bin")
    managed = _good(tmp_path / "managed")
    places = _places(
        shim.parent, dirs=(tmp_path / "none", good.parent), uv=_uv(tmp_path / "uv", managed)
    )
    assert locate_python(MINOR, places).executable == str(good)


def test_uvs_managed_interpreter_when_nothing_on_path_runs(tmp_path: Path) -> None:
    shim = _script(tmp_path / "shims", COMMAND, SHIM)
    managed = _good(tmp_path / "uv-python" / "bin")
    places = _places(shim.parent, dirs=(tmp_path / "none",), uv=_uv(tmp_path / "uv", managed))
    assert locate_python(MINOR, places) == PythonInfo(str(managed), VERSION)


def test_python3_when_its_version_is_the_one_asked_for(tmp_path: Path) -> None:
    python3 = _good(tmp_path / "bin", "python3")
    assert locate_python(MINOR, _places(python3.parent)).executable == str(python3)
    with pytest.raises(BuildError, match=rf"{python3} \(is Python {VERSION}\)"):
        locate_python("3.99", _places(python3.parent))


def test_when_nothing_runs_the_error_names_each_candidate_and_the_fixes(tmp_path: Path) -> None:
    shim = _script(tmp_path / "shims", COMMAND, SHIM)
    old = _script(tmp_path / "old", COMMAND, OLD)
    broken = _script(tmp_path / "broken", COMMAND, "#!/nonexistent/interpreter\n")
    places = _places(
        shim.parent, old.parent, dirs=(broken.parent, tmp_path / "none"), uv=_uv(tmp_path, None)
    )
    with pytest.raises(BuildError) as failed:
        locate_python(MINOR, places)
    message = failed.value.message
    assert message == (
        f"the spec asks for python '{MINOR}', and no working Python {MINOR} was found. Tried: "
        f"{shim} (exit 1: pyenv: version `{MINOR}' not installed); "
        f"{old} (is Python 3.9.18); "
        f"{broken} (No such file or directory); "
        f"{tmp_path / 'none' / COMMAND} (not found); "
        f"uv python find {MINOR} (exit 2: error: No interpreter found for Python {MINOR} in "
        "managed installations); "
        "python3 on PATH (not found)."
    )
    hint = failed.value.hint or ""
    assert f"apt-get install python{MINOR}-venv" in hint
    assert f"uv python install {MINOR}" in hint
    assert "set `python` in the spec to an interpreter's path" in hint
    assert ".." not in str(failed.value)


def test_without_uv_and_without_candidates_on_path(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as failed:
        locate_python(MINOR, _places(tmp_path))
    assert failed.value.message.endswith(
        f"Tried: {COMMAND} on PATH (not found); uv python find {MINOR} (uv not found); "
        "python3 on PATH (not found)."
    )


def test_a_path_is_run_to_be_verified(tmp_path: Path) -> None:
    shim = _script(tmp_path / "shims", COMMAND, SHIM)
    good = _good(tmp_path / "good")
    assert locate_python(str(good), _places()) == PythonInfo(str(good), VERSION)
    with pytest.raises(BuildError) as failed:
        locate_python(str(shim), _places())
    assert failed.value.message == (
        f"the spec's python '{shim}' does not run as a Python interpreter: "
        f"exit 1: pyenv: version `{MINOR}' not installed."
    )
    with pytest.raises(BuildError, match="No such file or directory"):
        locate_python(str(tmp_path / "missing"), _places())


def test_a_value_that_is_neither_a_version_nor_a_path(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match=r"'latest' is neither a version nor a path"):
        locate_python("latest", _places(tmp_path))


def test_find_python_searches_this_processs_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shim = _script(tmp_path / "shims", COMMAND, SHIM)
    good = _good(tmp_path / "good")
    monkeypatch.setenv("PATH", os.pathsep.join([str(shim.parent), str(good.parent)]))
    find_python.cache_clear()
    try:
        assert find_python(MINOR).executable == str(good)
    finally:
        find_python.cache_clear()
