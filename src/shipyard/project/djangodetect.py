"""What `init` reads from a Django project (never running it): its settings module, WSGI or
ASGI, how its tests run, its MEDIA_URL."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SETTINGS_FROM = ("manage.py",)  # beside the project's packages; then the entry's own module
# Apps that serve what only ASGI carries (WebSockets, long-lived connections).
ASGI_APPS = ("channels", "daphne")
MEDIA_URL_RE = re.compile(r"""^MEDIA_URL\s*=\s*["']/?([\w\-./]+?)/?["']""", re.M)
PYTEST_DJANGO_RE = re.compile(r"pytest[-_]django|DJANGO_SETTINGS_MODULE", re.I)
DEFAULT_MEDIA_URL = "/media/"


@dataclass(frozen=True)
class DjangoFound:
    settings: str  # the project's settings module
    settings_from: str  # where it was read ("manage.py"), or how it was guessed
    served: str  # why WSGI or ASGI
    tests: tuple[bool, str, list[str]]  # enabled, command ("" = the default), requirements
    media_url: str = DEFAULT_MEDIA_URL


def settings_module(project: Path, root: Path, entry_file: Path | None) -> tuple[str, str]:
    """The settings module `os.environ.setdefault("DJANGO_SETTINGS_MODULE", ...)` names in
    manage.py, else in the entry's own module (wsgi.py, asgi.py); else `<package>.settings`
    beside the entry. And where it was found."""
    files = [project / name for name in SETTINGS_FROM]
    if entry_file is not None:
        files.append(entry_file)
    for path in files:
        found = _setdefault_value(path)
        if found:
            return found, path.relative_to(project).as_posix()
    if entry_file is not None:
        package = ".".join(entry_file.parent.relative_to(root).parts)
        guess = f"{package}.settings" if package else "settings"
        return guess, "guessed beside the entry"
    return "", ""


def module_file(root: Path, module: str) -> Path:
    """The file of a dotted module under `root` (a package's __init__.py); it may not exist."""
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _setdefault_value(path: Path) -> str:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return ""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "setdefault" or len(node.args) != 2:
            continue
        key, value = node.args
        if (
            isinstance(key, ast.Constant)
            and key.value == "DJANGO_SETTINGS_MODULE"
            and isinstance(value, ast.Constant)
            and isinstance(value.value, str)
        ):
            return value.value
    return ""


def needs_asgi(settings_text: str) -> str:
    """Why a project needs ASGI, or "" when WSGI serves it: Channels (or Daphne) in its
    apps, or an ASGI_APPLICATION of its own. Async views alone run under WSGI too."""
    for app in ASGI_APPS:
        if re.search(rf"""["']{app}["']""", settings_text):
            return f"the settings install {app!r}, which needs ASGI"
    if re.search(r"^ASGI_APPLICATION\s*=", settings_text, re.M):
        return "the settings set ASGI_APPLICATION"
    return ""


def asgi_first(root: Path, wsgi_dirs: list[Path]) -> bool:
    """Whether a project with an ASGI entry (asgi.py) is served by it: when it has no WSGI
    entry, or its settings need ASGI (needs_asgi). WSGI otherwise: `startproject` makes
    both, and gunicorn's sync workers are Django's long-proven way."""
    return not wsgi_dirs or bool(needs_asgi(settings_text(root, wsgi_dirs[0])))


def settings_text(root: Path, package_dir: Path) -> str:
    project = root.parent if root.name == "src" else root
    entry_file = package_dir / "wsgi.py" if (package_dir / "wsgi.py").is_file() else None
    module = settings_module(project, root, entry_file)[0]
    path = module_file(root, module) if module else package_dir / "settings.py"
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def found(project: Path, root: Path, entry: str, framework: str) -> DjangoFound:
    module = entry.split(":")[0]
    entry_file = module_file(root, module)
    settings, where = settings_module(project, root, entry_file if entry_file.is_file() else None)
    text = ""
    if settings:
        try:
            text = module_file(root, settings).read_text(encoding="utf-8", errors="replace")
        except OSError:
            text = ""
    if framework == "django-asgi":
        served = needs_asgi(text) or "the project has no WSGI entry (wsgi.py)"
        served = f"ASGI ({entry}, on uvicorn): {served}"
    else:
        served = (
            f"WSGI ({entry}, on gunicorn): nothing needs ASGI (no Channels); async views run "
            "under WSGI too"
        )
    media = MEDIA_URL_RE.search(text)
    media_url = f"/{media.group(1)}/" if media else DEFAULT_MEDIA_URL
    return DjangoFound(settings, where, served, _tests(project, root), media_url)


def _tests(project: Path, root: Path) -> tuple[bool, str, list[str]]:
    """pytest when pytest-django is set up (its settings in pytest's config, or the package
    among the requirements); else Django's own runner, `manage.py test`."""
    config = "".join(
        _read(project / name)
        for name in ("pytest.ini", "pyproject.toml", "setup.cfg", "tox.ini", "conftest.py")
    )
    requirements = "".join(_read(p) for p in project.glob("requirements*.txt"))
    has_tests = any(
        p.name == "tests.py" or p.name.startswith("test_") or p.parent.name == "tests"
        for p in root.rglob("*.py")
        if ".venv" not in p.parts and "site-packages" not in p.parts
    )
    if PYTEST_DJANGO_RE.search(config) or "pytest-django" in requirements.lower():
        return has_tests, "", ["pytest", "pytest-django"]
    if (project / "manage.py").is_file():
        return has_tests, "python manage.py test", []
    return has_tests, "", ["pytest", "pytest-django"]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
