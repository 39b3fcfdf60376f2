"""The places a project's app may be served from, ranked: what its modules make (appscan),
read with `ast`, and the entry its Procfile names."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from shipyard.project import appscan, procfile
from shipyard.project.appscan import App, Factory
from shipyard.project.djangodetect import asgi_first

SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "env",
    "node_modules",
    "__pycache__",
    "build",
    "dist",
    "tests",
    "test",
    "docs",
    "site-packages",
    ".tox",
    ".nox",
    "migrations",
    "instance",
}
MAX_DEPTH = 4
MAX_FILES = 2000
# Modules a project names for its server to load; scripts that start its app.
SERVER_MODULES = ("wsgi", "asgi")
ENTRY_SCRIPTS = ("app", "main", "server")
# Why a candidate ranks where it does (lower first): the project's own server module, then
# a package's factory over anything a script makes. Django's two are ordered apart
# (django_ranked).
RANKS = {
    "server module": (0, "{module} is the project's {kind} module"),
    "factory in a package": (1, "a factory in a package"),
    "entry script": (2, "{module}, the project's entry script, gets it from the package"),
    "factory in a module": (3, "a factory in a module"),
    "module app": (4, "made at module level"),
    "script": (5, "a module that makes it with another one's factory"),
    "guessed": (6, "the only hint is the framework the module imports"),
    "django": (7, "Django's WSGI module"),
    "django-asgi": (8, "Django's ASGI module"),
}

# Between factories of one rank, the names that build the app for serving come before
# get_app and the like (aiohttp's demos: get_app() adds a debug toolbar to init_app()'s).
FACTORY_ORDER = ("create_app", "make_app", "init_app", "build_app", "app_factory")


@dataclass(frozen=True)
class Candidate:
    entry: str
    framework: str
    rank: int  # lower is better
    package_dir: Path  # the directory of the module that makes the app
    kind: str = "wsgi"  # wsgi | asgi | aiohttp
    how: str = ""  # how the code makes the app
    chosen: str = ""  # why it ranks where it does


def order(candidate: Candidate) -> tuple[int, int, str]:
    """The sort key of candidates: rank, then a factory's name (FACTORY_ORDER), then entry."""
    attribute = candidate.entry.partition(":")[2].removesuffix("()")
    named = FACTORY_ORDER.index(attribute) if attribute in FACTORY_ORDER else len(FACTORY_ORDER)
    return candidate.rank, named, candidate.entry


def python_files(root: Path) -> list[Path]:
    found: list[Path] = []
    stack = [(root, 0)]
    while stack and len(found) < MAX_FILES:
        directory, depth = stack.pop()
        for entry in sorted(directory.iterdir()):
            if entry.is_dir() and depth < MAX_DEPTH and entry.name not in SKIP_DIRS:
                if not entry.name.startswith(".") and not entry.name.endswith(".egg-info"):
                    stack.append((entry, depth + 1))
            elif entry.suffix == ".py" and not entry.name.startswith("test_"):
                found.append(entry)
    return found


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find(root: Path) -> list[Candidate]:
    """Every candidate entry under `root`, unranked (django_ranked, then RANKS, order them)."""
    project = appscan.Project(root)
    found = []
    for path in python_files(root):
        module = _module_name(root, path)
        if not module or not all(part.isidentifier() for part in module.split(".")):
            continue
        apps = project.module(module, path)
        if apps is None:
            continue
        has_entry_name = any(isinstance(apps.names.get(n), App) for n in appscan.ENTRY_NAMES)
        for name, value in apps.names.items():
            candidate = _candidate(module, apps, name, value, has_entry_name)
            if candidate is not None:
                found.append(candidate)
    return found


def _candidate(
    module: str, apps: appscan.ModuleApps, name: str, value: appscan.Value, has_entry_name: bool
) -> Candidate | None:
    """The entry `module:name` would be, ranked (RANKS), or None when it is none."""
    if isinstance(value, Factory):
        if not value.is_entry or name in apps.imported:
            return None
        where = "package" if apps.path.name == "__init__.py" else "module"
        app = value.app
        return _ranked(
            f"{module}:{name}()", app, f"factory in a {where}", f"{name}() returns {app.how}"
        )
    last = module.rpartition(".")[2]
    if value.framework.startswith("django"):
        if has_entry_name and name not in appscan.ENTRY_NAMES:
            return None  # Channels' asgi.py: `application` routes to `django_asgi_app`
        return _ranked(f"{module}:{name}", value, value.framework, value.how)
    if name not in appscan.ENTRY_NAMES:
        return None
    made_here = value.made_in == apps.path
    if name in apps.imported and last not in (*SERVER_MODULES, *ENTRY_SCRIPTS):
        return None  # a module using the app (`from pkg import app`), not serving it
    how = f"imported from the project: {value.how}" if name in apps.imported else value.how
    if last in SERVER_MODULES:
        reason = "server module"
    elif not made_here and last in ENTRY_SCRIPTS:
        reason = "entry script"
    elif value.guessed:
        reason = "guessed"
    else:
        reason = "module app" if made_here else "script"
    return _ranked(f"{module}:{name}", value, reason, how)


def _ranked(entry: str, app: App, reason: str, how: str) -> Candidate:
    rank, said = RANKS[reason]
    module_file = entry.split(":")[0].rpartition(".")[2] + ".py"
    chosen = said.format(module=module_file, kind=app.kind.upper())
    return Candidate(entry, app.framework, rank, app.made_in.parent, app.kind, how, chosen)


def procfile_first(candidates: list[Candidate], web: procfile.Web, root: Path) -> list[Candidate]:
    """The Procfile's web entry before what the code suggests: the author says how the app
    is served. `module:factory` (gunicorn's aiohttp worker, uvicorn --factory written
    apart) is the detected factory `module:factory()`."""
    entry = web.entry
    if not any(c.entry == entry for c in candidates) and any(
        c.entry == entry + "()" for c in candidates
    ):
        entry += "()"
    same = next((c for c in candidates if c.entry == entry), None)
    first = Candidate(
        entry,
        same.framework if same is not None else "python",
        -1,
        same.package_dir if same is not None else root,
        web.kind,
        same.how if same is not None else "",
        "the Procfile's web line names it",
    )
    return [first, *(c for c in candidates if c.entry != entry)]


def django_ranked(root: Path, candidates: list[Candidate]) -> list[Candidate]:
    """Django's ASGI entry ranks after its WSGI one (as `_candidates` found them), unless
    the project is served by ASGI (djangodetect.asgi_first): then before it."""
    asgi = [c for c in candidates if c.framework == "django-asgi"]
    wsgi = [c.package_dir for c in candidates if c.framework == "django"]
    if not asgi or not asgi_first(root, wsgi):
        return candidates
    first = RANKS["django"][0]
    return [replace(c, rank=first) if c in asgi else c for c in candidates]
