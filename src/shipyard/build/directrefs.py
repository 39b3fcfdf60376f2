"""Requirement lines that are not index pins: includes to follow, and local or URL references.

A `pip freeze` of a project's own venv lists the project itself (`-e .`, `app @ file:///...`):
that line is dropped, the release ships the app by itself. Any other path or URL dependency is
refused in one paragraph: hosts install offline from wheels of pinned versions only.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from urllib.parse import unquote, urlparse

from packaging.requirements import InvalidRequirement, Requirement

from shipyard.errors import BuildError

_INCLUDE = re.compile(r"^(?:-r|-c|--requirement|--constraint)(?:\s*=\s*|\s+|(?=\S))(\S+)")
_EDITABLE = re.compile(r"^(?:-e|--editable)(?:\s*=\s*|\s+)(\S+)")


def logical_lines(text: str) -> list[str]:
    """The lines of a requirements file, continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def included_files(path: Path, seen: frozenset[Path] = frozenset()) -> list[Path]:
    """The files `path` includes with -r or -c, recursively (each once, in order)."""
    found: list[Path] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return found  # uv reads it, and says what is wrong with it
    for line in logical_lines(text):
        match = _INCLUDE.match(line)
        if match is None or "://" in match.group(1):
            continue
        other = (path.parent / match.group(1)).resolve()
        if other in seen or other == path.resolve() or other in found:
            continue
        found.append(other)
        found += [f for f in included_files(other, seen | {path.resolve()}) if f not in found]
    return found


def prepared_requirements(path: Path, project: Path, name: str, out: Path) -> Path:
    """`path` for uv, without the app's own lines; refused before uv runs (which would fetch a
    git or URL dependency to read it) when any other line is a path or URL.

    Unchanged files are passed as they are; a file with the app's line (or including one that
    has it) is written again into `out`, its includes made absolute.
    """
    return _prepared(path.resolve(), project, name, out, frozenset())


def _prepared(path: Path, project: Path, name: str, out: Path, seen: frozenset[Path]) -> Path:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return path  # uv reads it, and says what is wrong with it
    lines: list[str] = []
    changed = False
    for line in logical_lines(text):
        include = _INCLUDE.match(line)
        if include is not None and "://" not in include.group(1):
            other = (path.parent / include.group(1)).resolve()
            flag = "-c" if line.startswith(("-c", "--constraint")) else "-r"
            if other in seen or other == path:
                continue  # uv would loop on it as pip does not: read it once
            prepared = _prepared(other, project, name, out, seen | {path})
            changed |= prepared != other
            lines.append(f"{flag} {prepared}")
            continue
        target = _direct_reference(line)
        if target is not None and _names_the_project(line, target, name, project, path):
            changed = True
            continue
        if target is not None:
            raise _refused(path.name, line)
        lines.append(line)
    if not changed:
        return path
    out.mkdir(parents=True, exist_ok=True)
    copy = out / f"{len(list(out.iterdir()))}-{path.name}"
    copy.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return copy


def _names_the_project(line: str, target: str, name: str, project: Path, source: Path) -> bool:
    """`-e .`, `app @ file:///...`, or pip freeze's `-e git+https://...#egg=app` of the app."""
    if _is_the_project(target, project, source):
        return True
    if not name:
        return False
    egg = re.search(r"#(?:.*&)?egg=([A-Za-z0-9._-]+)", target)
    named = egg.group(1) if egg else line.split("@", 1)[0].strip() if " @ " in line else ""
    return _canonical(named) == _canonical(name)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _refused(where: str, line: str) -> BuildError:
    return BuildError(
        f"{where}: the dependency {line.strip()!r} is a local path or URL, not a version "
        "pinned from a package index; shipyard installs the hosts offline from wheels of "
        "pinned versions (name==version) and does not build local or editable dependencies "
        "into a release.",
        hint="Publish the package to an index (a private one works: --index-url or "
        "--extra-index-url in the file) and pin it with '==', or move its code into the app. "
        "A line for the app itself (-e . or its own path) is fine: it is skipped.",
    )


def without_the_project(lock: str, project: Path, source: Path | None) -> str:
    """The compiled lock without the project's own line; any other direct reference is refused."""
    kept: list[str] = []
    for line in lock.splitlines():
        target = _direct_reference(line)
        if target is None:
            kept.append(line)
            continue
        if _is_the_project(target, project, source):
            continue
        raise _refused(source.name if source is not None else "the dependencies", line)
    return "".join(f"{line}\n" for line in kept)


def _direct_reference(line: str) -> str | None:
    """The path or URL of an editable or `name @ url` line; None for anything else."""
    text = line.split(" #", 1)[0].strip()
    editable = _EDITABLE.match(text)
    if editable is not None:
        return shlex.split(editable.group(1))[0] if editable.group(1) else ""
    if not text or text.startswith(("#", "-")):
        return None
    try:
        requirement = Requirement(text)
    except InvalidRequirement:
        return None
    return requirement.url


def _is_the_project(target: str, project: Path, source: Path | None) -> bool:
    parsed = urlparse(target)
    if parsed.scheme not in ("", "file"):
        return False
    raw = unquote(parsed.path) if parsed.scheme == "file" else target
    bases = [project] + ([source.parent] if source is not None else [])
    return any((base / raw).resolve() == project.resolve() for base in bases)
