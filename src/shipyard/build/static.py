"""Which files of a static directory a release serves: never hidden files or editor leftovers,
and in a git work tree never a file git ignores by itself."""

from __future__ import annotations

import fnmatch
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from shipyard.build.gitignore import Gitignore

# Left out of every static directory, whoever made them and whatever git says: a name that
# starts with '.' (.env, .git/, .htpasswd, vim's .x.swp, emacs' .#x), and editor backups
# and swap files and merge leftovers. nginx answers 404 for the same names (host/render).
NEVER_SERVED = ("*~", "#*#", "*.swp", "*.swo", "*.bak", "*.orig")


def is_never_served(name: str) -> bool:
    return name.startswith(".") or any(fnmatch.fnmatch(name, p) for p in NEVER_SERVED)


def static_files(project: Path, directory: str) -> list[Path]:
    """The files of `directory` (relative to `project`) a release serves, relative to the
    project, sorted.

    Never a hidden file, nor one under a hidden directory, nor an editor backup
    (NEVER_SERVED). Where git ignores a file by itself (`*.log`, `config.local.js`) it is
    left out too; a directory git ignores as a whole is build output the app needs served
    (Django's collectstatic dir, a bundler's dist/), so its files are kept. Outside a work
    tree, the project's .gitignore says the same.
    """
    root = project / directory
    files, dirs = _walk(project, root)
    ignored = _git_ignored(project, [*_ancestors(directory), *dirs, *files])
    if ignored is None:
        rules = Gitignore.parse(_read(project / ".gitignore"))
        ignored = {
            p
            for p in [*_ancestors(directory), *dirs, *files]
            if rules.ignores(PurePosixPath(p.as_posix()), is_dir=(project / p).is_dir())
        }
    ignored_dirs = {p for p in ignored if (project / p).is_dir()}
    return sorted(f for f in files if f not in ignored or any(d in ignored_dirs for d in f.parents))


def _walk(project: Path, root: Path) -> tuple[list[Path], list[Path]]:
    files: list[Path] = []
    dirs: list[Path] = []
    for here, subdirs, names in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not is_never_served(d) and d != "__pycache__")
        rel = Path(here).relative_to(project)
        dirs += [rel / d for d in subdirs]
        files += [rel / n for n in names if not is_never_served(n)]
    return files, dirs


def _ancestors(directory: str) -> list[Path]:
    path = Path(directory)
    return [path, *(p for p in path.parents if p != Path("."))]


def _git_ignored(project: Path, paths: Sequence[Path]) -> set[Path] | None:
    """Which of `paths` git ignores (tracked files never are); None outside a work tree."""
    try:
        inside = subprocess.run(
            ["git", "rev-parse", "--is-inside-work-tree"],
            cwd=project,
            capture_output=True,
            check=False,
            timeout=30,
        )
        if inside.returncode != 0 or inside.stdout.strip() != b"true":
            return None
        proc = subprocess.run(
            ["git", "check-ignore", "--stdin", "-z"],
            cwd=project,
            input=b"".join(p.as_posix().encode() + b"\0" for p in paths),
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode not in (0, 1):  # 1: nothing is ignored
        return None
    return {Path(name) for name in proc.stdout.decode().split("\0") if name}


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
