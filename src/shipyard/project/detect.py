"""Detect an app's entry point, framework, static files and tests by reading (not running) it."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipyard.errors import SpecError
from shipyard.project import djangodetect, procfile
from shipyard.project.candidates import (
    MAX_DEPTH,
    Candidate,
    django_ranked,
    find,
    order,
    procfile_first,
    python_files,
)
from shipyard.project.commands import Commands, Proposed, propose_commands
from shipyard.project.djangodetect import DjangoFound, module_file, settings_module
from shipyard.spec.buildmode import PACKAGING_FILES, BuildChoice, choose_build
from shipyard.spec.depsource import AUTO_ORDER, NO_DEPS, DepSource, choose_source
from shipyard.spec.model import DEFAULT_ASGI_SERVER, ServerType

# What each kind of app is served by unless the project says otherwise.
SERVERS = {
    "wsgi": ServerType.GUNICORN.value,
    "asgi": DEFAULT_ASGI_SERVER.value,
    "aiohttp": ServerType.AIOHTTP.value,
}
LOOKED_FOR = (
    "`app`/`application` made by Flask(...), FastAPI(...), Starlette(...), Quart(...), "
    "Litestar(...), aiohttp's web.Application(...), Falcon or Bottle, or by a call wrapping "
    "one (middleware, socketio.ASGIApp, WsgiToAsgi), in a module importing such a framework; "
    "a factory returning one (`def create_app()`, `async def make_app()`); a wsgi.py, "
    "asgi.py, app.py, main.py or server.py that imports its app or factory from the "
    "project's package; Django's wsgi.py/asgi.py; a Procfile's `web:` line"
)


WHEEL = BuildChoice("wheel", "")


@dataclass(frozen=True)
class Detected:
    name: str
    entry: str
    framework: str
    kind: str  # wsgi | asgi | aiohttp (aiohttp's worker: neither, the spec's kind unread)
    server: str
    how: str = ""  # how the code makes the app
    chosen: str = ""  # why this entry was chosen
    static: dict[str, str] = field(default_factory=dict)
    tests_enabled: bool = True
    test_requirements: list[str] = field(default_factory=lambda: ["pytest"])
    requirements: str = "auto"
    setup: str = ""
    release: str = ""
    why: dict[str, str] = field(default_factory=dict)  # "setup"/"release" -> why proposed
    secrets: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    build: BuildChoice = WHEEL
    deps: DepSource = NO_DEPS
    persistent: list[str] = field(default_factory=list)
    persistent_files: list[str] = field(default_factory=list)
    processes: dict[str, str] = field(default_factory=dict)
    workers: int = 0
    tests_command: str = ""  # empty: the spec's default
    django: DjangoFound | None = None


def normalise_name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    if not name or not name[0].isalpha():
        name = f"app-{name}".rstrip("-")
    return name[:40].rstrip("-")


def detect(project: Path) -> Detected:
    """What `shipyard init` writes: raises SpecError when no entry point is found."""
    pyproject = _read_pyproject(project)
    meta: dict[str, Any] = pyproject.get("project", {})
    root = project / "src" if (project / "src").is_dir() else project
    candidates = sorted(django_ranked(root, find(root)), key=order)
    found_procfile = procfile.read(project)
    web = found_procfile.web if found_procfile else None
    if web is not None and web.entry:
        candidates = procfile_first(candidates, web, root)
    if not candidates:
        raise SpecError(
            f"found no web app in {project}: looked for {LOOKED_FOR}, in the Python files "
            f"under {root} (up to {MAX_DEPTH} levels deep).",
            hint=f"Write shipyard.toml by hand, naming the app object: name = "
            f'"{normalise_name(project.resolve().name)}" and entry = "package.module:app" '
            '(a factory: "package:create_app()"; an ASGI app: add kind = "asgi"; an aiohttp '
            'app: [server] type = "aiohttp"); '
            "every key: docs/spec.md.",
        )
    best = candidates[0]
    notes: list[str] = []
    kind, server = best.kind, SERVERS[best.kind]
    if web is not None and web.entry:
        kind, server = web.kind, web.server
    static = _static(project, best)
    tests_enabled = any((project / d).is_dir() for d in ("tests", "test")) or any(
        project.glob("test_*.py")
    )
    if not tests_enabled:
        notes.append("no tests found: the test gate is off (tests.enabled = false)")
    extras: dict[str, list[str]] = meta.get("optional-dependencies", {})
    test_requirements = next(
        (list(extras[k]) for k in ("test", "tests", "dev") if k in extras), ["pytest"]
    )
    requirements = "auto"
    present = {file for file, _ in AUTO_ORDER if (project / file).is_file()}
    poetry = pyproject.get("tool", {}).get("poetry", {})
    deps = choose_source(present, bool(meta.get("dependencies") or poetry.get("dependencies")))
    build = _build_choice(project)
    persistent, persistent_files = _data_beside_code(project, best) if build.is_tree else ([], [])
    commands = propose_commands(
        project, best.framework, best.entry.split(":")[0], python_files(best.package_dir)
    )
    django = _django_found(project, root, best) if best.framework.startswith("django") else None
    tests_command = ""
    secrets = _secret_variables(best.package_dir)
    if django is not None:
        tests_enabled, tests_command, test_requirements = django.tests
        secrets = sorted({*secrets, "DJANGO_SECRET_KEY"})
        notes = [n for n in notes if not n.startswith("no tests found")]
        if not tests_enabled:
            notes.append("no tests found: the test gate is off (tests.enabled = false)")
    if found_procfile is not None:
        commands = _with_procfile(commands, found_procfile)
    why: dict[str, str] = {}
    for key, found in (("setup", commands.setup), ("release", commands.release)):
        if found is not None:
            why[key] = found.why
            notes.append(f'proposed {key} = "{found.command}": {found.why}')
    notes += commands.notes
    return Detected(
        name=normalise_name(str(meta.get("name") or project.resolve().name)),
        entry=best.entry,
        framework=best.framework,
        kind=kind,
        server=server,
        how=best.how,
        chosen=best.chosen + (" (the only candidate)" if len(candidates) == 1 else ""),
        static=static,
        tests_enabled=tests_enabled,
        test_requirements=test_requirements,
        requirements=requirements,
        setup=commands.setup.command if commands.setup else "",
        release=commands.release.command if commands.release else "",
        why=why,
        secrets=secrets,
        alternatives=[c.entry for c in candidates[1:5]],
        notes=notes,
        build=build,
        deps=deps,
        persistent=persistent,
        persistent_files=persistent_files,
        processes=found_procfile.processes if found_procfile else {},
        workers=web.workers if web is not None else 0,
        tests_command=tests_command,
        django=django,
    )


def _with_procfile(commands: Commands, found: procfile.Procfile) -> Commands:
    """The Procfile's release line, as the author wrote it, over what the code suggests."""
    setup, release = commands.setup, commands.release
    if found.setup:
        setup = Proposed(found.setup, "the Procfile's release line; it creates the database")
    if found.release:
        release = Proposed(found.release, "the Procfile's release line (every deploy)")
    return Commands(setup, release, [*commands.notes, *found.notes])


def _build_choice(project: Path) -> BuildChoice:
    texts = {
        name: (project / name).read_text(encoding="utf-8", errors="replace")
        for name in PACKAGING_FILES
        if (project / name).is_file()
    }
    has_uv_lock = (project / "uv.lock").is_file()
    return choose_build("auto", texts, has_uv_lock, str(project / "pyproject.toml"))


# What apps run from their tree commonly write beside their code: uploaded and media files.
DATA_DIRS = ("uploads", "media")
SQLITE_HEADER = b"SQLite format 3\x00"


def _data_beside_code(project: Path, best: Candidate) -> tuple[list[str], list[str]]:
    """The directories and files a source-tree app keeps its data in, to persist: those of
    DATA_DIRS the project has (a Django project's media/ is its MEDIA_ROOT's), SQLite
    databases at the top, and Django's default one.
    (instance/, Flask's, persists without configuration: host/release.py tree_instance.)"""
    django = best.framework.startswith("django")
    # a Django project's uploads are MEDIA_ROOT's, kept in shared/media (host/djangoapp.py)
    dirs = [n for n in DATA_DIRS if (project / n).is_dir() and not (django and n == "media")]
    files = sorted(p.name for p in project.iterdir() if p.is_file() and _is_sqlite(p))
    if django and "db.sqlite3" not in files:
        root = project / "src" if (project / "src").is_dir() else project
        settings = _django_settings(project, root, best)
        text = settings.read_text(encoding="utf-8", errors="replace") if settings.is_file() else ""
        files += ["db.sqlite3"] if "db.sqlite3" in text else []
    return dirs, files


def _is_sqlite(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _read_pyproject(project: Path) -> dict[str, Any]:
    path = project / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SpecError(f"{path} is not valid TOML: {err}.") from None


def _django_found(project: Path, root: Path, best: Candidate) -> DjangoFound:
    return djangodetect.found(project, root, best.entry, best.framework)


def _django_settings(project: Path, root: Path, best: Candidate) -> Path:
    """The file of the project's settings module."""
    entry_file = module_file(root, best.entry.split(":")[0])
    module = settings_module(project, root, entry_file if entry_file.is_file() else None)[0]
    return module_file(root, module) if module else best.package_dir / "settings.py"


def _static(project: Path, best: Candidate) -> dict[str, str]:
    static = best.package_dir / "static"
    if best.framework in ("flask", "quart") and static.is_dir():
        return {"/static": static.relative_to(project).as_posix()}
    if best.framework.startswith("django"):
        root = project / "src" if (project / "src").is_dir() else project
        return _django_static(project, _django_settings(project, root, best))
    return {}


STATIC_ROOT_RE = re.compile(r"""^STATIC_ROOT\s*=\s*BASE_DIR\s*/\s*["']([\w\-./]+)["']""", re.M)
STATIC_URL_RE = re.compile(r"""^STATIC_URL\s*=\s*["']/?([\w\-./]*?)/?["']""", re.M)


def _django_static(project: Path, settings: Path) -> dict[str, str]:
    """Nothing for a project with django.contrib.staticfiles: the build collects its files
    (build/django_static.py). Without it, files collected by hand (STATIC_ROOT under
    BASE_DIR, the project), served at STATIC_URL; only once they are there."""
    text = settings.read_text(encoding="utf-8", errors="replace") if settings.is_file() else ""
    if "django.contrib.staticfiles" in text:
        return {}
    root, url = STATIC_ROOT_RE.search(text), STATIC_URL_RE.search(text)
    if root is None or not (project / root.group(1)).is_dir():
        return {}
    return {"/" + (url.group(1) if url and url.group(1) else "static"): root.group(1)}


SECRET_ENV_RE = re.compile(
    r"""(?:environ\.get|getenv|environ)\s*[(\[]\s*["']([A-Z][A-Z0-9_]*(?:SECRET|_KEY)[A-Z0-9_]*)["']"""
)


def _secret_variables(package_dir: Path) -> list[str]:
    """Environment variables the app reads that look like secrets (…SECRET…, …_KEY)."""
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        try:
            found.update(SECRET_ENV_RE.findall(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return sorted(found)
