"""The project's source files and their content hash: the build's main input."""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from shipyard.build.gitignore import Gitignore
from shipyard.build.static import static_files
from shipyard.errors import BuildError
from shipyard.spec.buildmode import PACKAGING_FILES, BuildChoice, choose_build

# Never part of a release, wherever they are: environments, caches, build output.
ALWAYS_EXCLUDED = (
    ".git",
    ".hg",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    "node_modules",
    "*.egg-info",
    ".shipyard",
    ".coverage",
)
# Nor these directories at the project's top, where venvs, build output and dev data (Flask's
# instance/) are made: deeper down they may be the app's own packages (myapp/env/). Any
# directory with a pyvenv.cfg is a venv, wherever it is.
TOP_EXCLUDED = ("venv", "env", "build", "dist", "instance")
# In a directory `shipyard export` wrote (a container image's build context): what it holds
# is made from a release, not part of one.
EXPORT_MARKER = ".shipyard-export"


# Also kept out of a source tree deployed as it is (not of a wheel's inputs): a dotenv file
# holds the developer's own settings and secrets.
TREE_EXCLUDED = (".env",)


def source_files(project: Path, exclude: Sequence[str], keep_out: Sequence[str] = ()) -> list[Path]:
    """Files under `project`, relative to it, sorted.

    In a git work tree, those git lists: tracked, and untracked ones it does not ignore;
    elsewhere every file but those the project's .gitignore names. Never ALWAYS_EXCLUDED or
    the `exclude` globs, nor anything at or under the paths of `keep_out` (the app's
    persistent data, which is no part of a release), a venv, or an export's output.
    """
    patterns = (*ALWAYS_EXCLUDED, *exclude)
    listed = _git_files(project)
    if listed is None:
        listed = _walk(project, patterns, Gitignore.parse(_read(project / ".gitignore")))
    out = (
        *(PurePosixPath(p) for p in keep_out),
        *(
            PurePosixPath(p.parent.as_posix())
            for p in listed
            if p.name in ("pyvenv.cfg", EXPORT_MARKER)
        ),
    )
    return sorted(
        p
        for p in listed
        if not _excluded(p, patterns)
        and not (len(p.parts) > 1 and p.parts[0] in TOP_EXCLUDED)
        and not _under(p, out)
        and (project / p).is_file()
    )


def with_dirs(
    project: Path, files: Sequence[Path], dirs: Sequence[str], keep_out: Sequence[str] = ()
) -> list[Path]:
    """`files`, with what is under `dirs` (relative to `project`) replaced by the files a
    release serves from them (build/static.py), but those under `keep_out`, sorted:
    collected static files git ignores are still what the app reads at run time (Django's
    manifest of them), and what it may serve itself (WhiteNoise), so no hidden file."""
    roots = tuple(PurePosixPath(Path(d).as_posix()) for d in dirs)
    found = {p for p in files if not _under(p, roots)}
    for directory in dirs:
        found.update(static_files(project, directory))
    out = tuple(PurePosixPath(p) for p in keep_out)
    return sorted(p for p in found if not _under(p, out))


def _under(path: Path, roots: tuple[PurePosixPath, ...]) -> bool:
    posix = PurePosixPath(path.as_posix())
    return any(posix == root or root in posix.parents for root in roots)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


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


TOP = PurePosixPath(".")


def _walk(project: Path, patterns: tuple[str, ...], ignore: Gitignore) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(project):
        rel_root = PurePosixPath(Path(root).relative_to(project).as_posix())
        dirs[:] = [
            d
            for d in dirs
            if not _matches(d, patterns)
            and not (rel_root == TOP and d in TOP_EXCLUDED)
            and not os.path.isfile(os.path.join(root, d, "pyvenv.cfg"))
            and not ignore.ignores(rel_root / d, is_dir=True)
        ]
        found += [
            Path(rel_root / name) for name in files if not ignore.ignores(rel_root / name, False)
        ]
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


def copy_files(project: Path, files: Sequence[Path], dest: Path) -> dict[str, str]:
    """Copy `files` (relative to `project`) into `dest`, as they are (mode and times); the
    sha256 of each, by its relative path. A build reads the copy, so it never writes into
    the user's tree (setuptools' build/ and *.egg-info/)."""
    digests = {}
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, target)
        digests[rel.as_posix()] = hashlib.sha256(target.read_bytes()).hexdigest()
    return digests


def build_choice(project: Path, setting: str) -> BuildChoice:
    """Wheel or tree, for the spec's build.mode and the project's packaging files."""
    texts = {}
    for name in PACKAGING_FILES:
        path = project / name
        if path.is_file():
            try:
                texts[name] = path.read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                raise BuildError(f"cannot read {path}: {err.strerror or err}.") from None
    has_uv_lock = (project / "uv.lock").is_file()
    return choose_build(setting, texts, has_uv_lock, str(project / "pyproject.toml"))
