"""Pinned dependencies from uv.lock, poetry.lock, requirements.txt or pyproject, plus the app
server."""

from __future__ import annotations

import hashlib
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from shipyard.build.directrefs import included_files, prepared_requirements, without_the_project
from shipyard.build.platforms import Platform
from shipyard.build.poetry import poetry_inputs
from shipyard.build.tools import fail, uv
from shipyard.errors import BuildError, SpecError
from shipyard.host.python import PythonInfo
from shipyard.host.steps import Connection
from shipyard.spec.depsource import AUTO_ORDER, DepSource, choose_source, kind_of


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


def requirement_source(project: Path, setting: str) -> tuple[str, Path | None]:
    """Which file the pins come from: (kind, path); the kinds are depsource.DepSource's."""
    if setting != "auto":
        if setting == "pyproject":
            return "pyproject", project / "pyproject.toml"
        path = project / setting
        if not path.is_file():
            raise SpecError(
                f"build.requirements names {setting!r}, which is not a file in {project}.",
                hint="Set it to 'auto', 'pyproject', or the path of a requirements file, "
                "uv.lock or poetry.lock.",
            )
        return kind_of(setting), path
    found = auto_source(project)
    return found.kind, (project / found.file if found.file else None)


def auto_source(project: Path) -> DepSource:
    """What `auto` picks in `project`, and why."""
    present = {file for file, _ in AUTO_ORDER if (project / file).is_file()}
    return choose_source(present, _has_project_table(project / "pyproject.toml"))


def _has_project_table(pyproject: Path) -> bool:
    """A pyproject.toml that only configures tools ([tool.*]) declares no dependencies."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # uv reads it, and says what is wrong with it
    return "project" in data or "poetry" in data.get("tool", {})


def _input_files(kind: str, path: Path) -> list[Path]:
    """The files whose bytes the pins depend on, beyond `path` itself."""
    if kind == "poetry.lock":
        return [path.parent / "pyproject.toml"]
    if kind == "requirements":
        return included_files(path)
    return []


def lock_key(
    project: Path,
    setting: str,
    extra: list[str],
    python: PythonInfo,
    platform: Platform | None = None,
) -> str:
    kind, path = requirement_source(project, setting)
    digest = hashlib.sha256(f"{kind}\0{python.minor}\0{sorted(extra)}".encode())
    if platform is not None and not platform.is_local:  # local: the ids stay as they were
        digest.update(platform.key.encode())
    if path is not None:
        digest.update(path.read_bytes())
        for other in _input_files(kind, path):  # -r/-c includes; a poetry project's pyproject
            digest.update(b"\0" + other.read_bytes() if other.is_file() else b"\0-")
    return digest.hexdigest()[:20]


def compile_lock(
    conn: Connection,
    project: Path,
    setting: str,
    extra: list[str],
    python: PythonInfo,
    cache: Path,
    platform: Platform | None = None,
) -> str:
    """Pinned requirements text; cached by the inputs so a warm build asks no index.

    For another platform (`platform`, when not this machine's) the markers are resolved as
    they are there.
    """
    cached = cache / "locks" / f"{lock_key(project, setting, extra, python, platform)}.txt"
    if cached.is_file():
        return cached.read_text()
    for_platform: tuple[str, ...] = ()
    if platform is not None and not platform.is_local:
        target = platform.uv_target()
        if target is None:
            raise BuildError(
                f"cannot resolve the app's dependencies for {platform.describe()} from here "
                "(shipyard knows glibc Linux on x86_64 and aarch64).",
                hint="Deploy from a machine of that platform.",
            )
        for_platform = ("--python-platform", target)
    kind, path = requirement_source(project, setting)
    constrain: tuple[str, ...] = ()
    with tempfile.TemporaryDirectory(prefix="shipyard-lock-") as tmp:
        inputs = [Path(tmp) / "server.in"]
        inputs[0].write_text("\n".join(extra) + "\n")
        if kind == "uv.lock":
            exported = Path(tmp) / "exported.txt"
            result = conn.run(
                uv(
                    "export",
                    "--frozen",
                    "--no-hashes",
                    "--no-emit-project",
                    "--no-dev",
                    "--format",
                    "requirements-txt",
                    "-o",
                    str(exported),
                    cwd=project,
                )
            )
            if not result.ok:
                raise fail(result, "cannot export the pins from uv.lock")
            inputs.append(exported)
        elif kind == "poetry.lock" and path is not None:
            requirements, constraints = poetry_inputs(project, path)
            inputs.append(Path(tmp) / "poetry.in")
            inputs[-1].write_text(requirements)
            (Path(tmp) / "poetry.lock.txt").write_text(constraints)
            constrain = ("-c", str(Path(tmp) / "poetry.lock.txt"))
        elif kind == "pyproject" and path is not None and not _declares_project(path):
            raise BuildError(
                f"{path} declares its dependencies in [tool.poetry] and the project has no "
                "poetry.lock to read their versions from.",
                hint="Run 'poetry lock' in the project (shipyard deploys the versions it pins).",
            )
        elif kind == "requirements" and path is not None:
            own = _project_name(project)
            inputs.append(prepared_requirements(path, project, own, Path(tmp) / "requirements"))
        elif path is not None:
            inputs.append(path)
        result = conn.run(
            uv(
                "pip",
                "compile",
                *map(str, inputs),
                *constrain,
                "--python",
                python.executable,
                "--python-version",
                python.minor,
                *for_platform,
                "--no-header",
                "--no-annotate",
                "--quiet",
                cwd=project,
            )
        )
    if not result.ok:
        raise fail(
            result,
            "cannot resolve the app's dependencies",
            hint="Check the requirement names and versions (resolving needs the index once).",
        )
    lock = without_the_project(result.stdout, project, path)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(lock)
    return lock


def _project_name(project: Path) -> str:
    """The app's distribution name (pyproject's [project] or [tool.poetry]); "" when none."""
    try:
        data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return ""
    poetry = data.get("tool", {}).get("poetry", {})
    return str(data.get("project", {}).get("name") or poetry.get("name") or "")


def _declares_project(pyproject: Path) -> bool:
    try:
        return "project" in tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True  # uv reads it, and says what is wrong with it


def parse_pins(lock_text: str) -> list[Pin]:
    """name==version pins of a compiled lock, skipping comments and option lines."""
    pins = []
    for line in lock_text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement as err:
            raise BuildError(f"cannot read the pinned requirement {line!r}: {err}.") from None
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise BuildError(f"requirement {line!r} is not pinned with '=='.")
        pins.append(Pin(str(canonicalize_name(requirement.name)), specs[0].version))
    return pins
