"""The test gate: the project's own tests in a clean venv, before anything is built."""

from __future__ import annotations

import hashlib
import os
import shlex
from pathlib import Path

from shipyard.build.artifact import BuildInputs
from shipyard.build.buildenv import ensure_venv, env_key
from shipyard.build.django_static import build_env
from shipyard.build.pycache import bytecode_env
from shipyard.errors import TestsFailed
from shipyard.host.steps import Command, Connection
from shipyard.spec.model import Spec

TEST_TIMEOUT = 1800


def test_env_key(inputs: BuildInputs, spec: Spec) -> str:
    return env_key(inputs.lock, spec.tests.requirements, inputs.python)


def passed_marker(cache: Path, inputs: BuildInputs, spec: Spec) -> Path:
    digest = hashlib.sha256(f"{inputs.source_sha256}\0{spec.tests.command}".encode())
    digest.update(test_env_key(inputs, spec).encode())
    return cache / "tests-passed" / digest.hexdigest()[:24]


def run_tests(conn: Connection, project: Path, spec: Spec, cache: Path, inputs: BuildInputs) -> str:
    """Run the tests; return a one-line summary, or raise TestsFailed with the failing output."""
    marker = passed_marker(cache, inputs, spec)
    if marker.exists():
        return "passed before for this exact source, lock and command (cached)"
    venv = _ensure_test_venv(conn, spec, cache, inputs)
    root = project.resolve()  # as the run's working directory names its files
    import_root = root / "src" if (root / "src" / spec.top_package).is_dir() else root
    # no bytecode in the project's tree: a deploy leaves it as it found it
    bytecode = bytecode_env(
        cache / "pycache", root, inputs.files, same_python=inputs.python.is_shipyards_own
    )
    env = {
        "PATH": f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "VIRTUAL_ENV": str(venv),
        "PYTHONPATH": str(import_root),
        **bytecode,
        # nor pytest's cache
        "PYTEST_ADDOPTS": f"{os.environ.get('PYTEST_ADDOPTS', '')} -p no:cacheprovider".strip(),
        **build_env(spec),
        **spec.env,
    }
    argv = tuple(shlex.split(spec.tests.command))
    result = conn.run(Command(argv, cwd=str(root), env=env, timeout=TEST_TIMEOUT))
    if not result.ok:
        raise TestsFailed(
            f"the app's tests failed, so nothing was deployed (exit {result.exit_code}: "
            f"{spec.tests.command}).\n{result.output_tail(40)}",
            hint="Fix the tests, or deploy anyway with --skip-tests (not recommended).",
        )
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return _summary(result.stdout, result.stderr)


def _summary(stdout: str, stderr: str) -> str:
    """The suite's last word: pytest's on stdout; unittest's (Django's `manage.py test`)
    "Ran N tests in T" on stderr, where it writes its report."""
    ran = [line for line in stderr.splitlines() if line.startswith("Ran ")]
    if ran:
        return f"{ran[-1]}: OK"
    lines = stdout.strip().splitlines()
    return lines[-1] if lines else "passed"


def _ensure_test_venv(conn: Connection, spec: Spec, cache: Path, inputs: BuildInputs) -> Path:
    venv = cache / "testenvs" / test_env_key(inputs, spec)
    requirements = spec.tests.requirements
    return ensure_venv(conn, venv, inputs.lock, inputs.python, cache, requirements, "the test venv")
