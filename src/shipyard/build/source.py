"""The project's source files and their content hash: the build's main input."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import subprocess
from pathlib import Path

# Never part of a release: environments, caches, build output, and dev data (Flask's instance/).
ALWAYS_EXCLUDED = (
    ".git",
    ".hg",
    ".venv",
    "venv",
    "env",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    "node_modules",
    "dist",
    "build",
    "*.egg-info",
    ".shipyard",
    "instance",
    ".coverage",
)


def source_files(project: Path, exclude: list[str]) -> list[Path]:
    """Files under `project`, relative to it, sorted; git's ignore rules apply in a checkout."""
    patterns = (*ALWAYS_EXCLUDED, *exclude)
    listed = _git_files(project)
    candidates = listed if listed is not None else _walk(project, patterns)
    return sorted(p for p in candidates if not _excluded(p, patterns) and (project / p).is_file())


def _git_files(project: Path) -> list[Path] | None:
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            cwd=project,
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return [Path(name) for name in proc.stdout.decode().split("\0") if name]


def _walk(project: Path, patterns: tuple[str, ...]) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(project):
        rel_root = Path(root).relative_to(project)
        dirs[:] = [d for d in dirs if not _matches(d, patterns)]
        found += [rel_root / name for name in files]
    return found


def _excluded(path: Path, patterns: tuple[str, ...]) -> bool:
    return any(_matches(part, patterns) for part in path.parts) or any(
        fnmatch.fnmatch(path.as_posix(), pattern) for pattern in patterns
    )


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def hash_files(project: Path, files: list[Path]) -> str:
    """sha256 over each file's path, executable bit and content."""
    digest = hashlib.sha256()
    for rel in files:
        path = project / rel
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def git_sha(project: Path) -> str:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=project,
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""
