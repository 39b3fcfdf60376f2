"""A Django project's static files, collected at build time into the release (docs/django.md).

`collectstatic` runs on the deploying machine, in a venv of the app's pinned dependencies,
with the release's settings module, into a directory of the build: never into the user's
tree. Its output is kept by the digest of what the static finders find (paths and contents),
the storage and STATIC_URL. And a build whose static inputs are those of an earlier one
reuses that one's set without running Python at all (inputs_key): a code-only change costs
no Django start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from shipyard.build.buildenv import ensure_venv, env_key
from shipyard.build.tools import fail
from shipyard.errors import BuildError
from shipyard.host import render
from shipyard.host.djangoapp import STATIC_DIR, WRAPPER_MODULE
from shipyard.host.python import PythonInfo
from shipyard.host.steps import Command, Connection
from shipyard.spec.model import Spec

# The settings are imported at build time, where the app's secrets are not: a settings file
# that reads the key at import gets this one, which nothing that is deployed ever holds.
BUILD_SECRET_KEY = "shipyard-build-time-only-not-a-secret"
MARKER = "SHIPYARD-DJANGO "
KEPT = 8  # collected sets kept in the cache
COLLECT_TIMEOUT = 900

# Run in the build venv: the digest of what collectstatic would collect, then (unless that
# set is in the cache) collectstatic itself into STATIC_ROOT; a JSON line says which.
SCRIPT = r"""
import hashlib, json, os, sys
import django
django.setup()
from django.apps import apps
from django.conf import settings
out = {"static_url": settings.STATIC_URL or "", "installed": False, "key": ""}
if apps.is_installed("django.contrib.staticfiles"):
    from django.contrib.staticfiles import finders
    from django.core.management import call_command
    out["installed"] = True
    root = os.environ["DJANGO_STATIC_ROOT"]
    if os.path.abspath(str(settings.STATIC_ROOT or "")) != os.path.abspath(root):
        print("the settings do not take STATIC_ROOT from DJANGO_STATIC_ROOT", file=sys.stderr)
        sys.exit(3)
    storages = getattr(settings, "STORAGES", None) or {}
    backend = storages.get("staticfiles", {}).get("BACKEND") or getattr(
        settings, "STATICFILES_STORAGE", ""
    )
    digest = hashlib.sha256(f"{django.__version__}\0{out['static_url']}\0{backend}\0".encode())
    ignore = ["CVS", ".*", "*~", *apps.get_app_config("staticfiles").ignore_patterns]
    found = {}
    for finder in finders.get_finders():
        for path, storage in finder.list(ignore):
            name = os.path.join(getattr(storage, "prefix", None) or "", path)
            found.setdefault(name, storage.path(path))
    for name, path in sorted(found.items()):
        with open(path, "rb") as handle:
            digest.update(name.encode() + b"\0" + hashlib.sha256(handle.read()).digest())
    out["key"] = digest.hexdigest()[:24]
    if not os.path.exists(os.path.join(sys.argv[1], out["key"], ".complete")):
        call_command("collectstatic", interactive=False, verbosity=0)
        out["collected"] = True
print("SHIPYARD-DJANGO " + json.dumps(out))
"""


@dataclass(frozen=True)
class Collected:
    static_url: str  # STATIC_URL as the settings give it ('/static/'; a URL for a CDN)
    directory: Path | None  # the collected files; None: staticfiles is not installed


def inputs_key(
    project: Path, files: Sequence[Path], spec: Spec, lock: str, python: PythonInfo
) -> str:
    """What the collected set can depend on, short of running the project: the pins (every
    installed app's static files), the spec's env and [django], and of the project's files
    every one but Python modules, and those Python modules that say what is collected: the
    settings' package, the apps' AppConfigs (apps.py), storage classes (*storage*.py)."""
    assert spec.django is not None
    settings_dir = Path(*spec.django.settings.split(".")[:-1])
    digest = hashlib.sha256(f"{lock}\0{python.minor}\0".encode())
    digest.update(spec.django.model_dump_json().encode() + json.dumps(spec.env).encode())
    for rel in sorted(files):
        python_module = rel.suffix == ".py"
        says = rel.name == "apps.py" or "storage" in rel.name or _under(rel, settings_dir)
        if python_module and not says:
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256((project / rel).read_bytes()).digest())
    return digest.hexdigest()[:24]


def _under(rel: Path, directory: Path) -> bool:
    src = Path("src")
    return rel.parent in (directory, src / directory) or directory in rel.parents


def build_env(spec: Spec) -> dict[str, str]:
    """What a Django project's settings see at build and test time, before the spec's env."""
    return {"DJANGO_SECRET_KEY": BUILD_SECRET_KEY} if spec.django is not None else {}


def collect(
    conn: Connection,
    spec: Spec,
    code: Path,
    cache: Path,
    lock: str,
    python: PythonInfo,
    inputs: str = "",
) -> Collected:
    """Collect the static files of the project whose importable code is at `code`; the
    directory returned is in the cache (link or copy it, never change it). `inputs`: the
    inputs_key of this build, under which an earlier build's result is found."""
    assert spec.django is not None
    store = cache / "django-static"
    remembered = store / "inputs" / inputs if inputs else None
    if remembered is not None and remembered.is_file():
        told = json.loads(remembered.read_text())
        kept = store / told["key"] if told["key"] else None
        if kept is None or (kept / ".complete").exists():
            if kept is not None:
                os.utime(kept)
            return Collected(told["static_url"], kept)
    collected = _collect(conn, spec, code, cache, lock, python)
    if remembered is not None:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        key = collected.directory.name if collected.directory else ""
        remembered.write_text(json.dumps({"static_url": collected.static_url, "key": key}))
    return collected


def _collect(
    conn: Connection, spec: Spec, code: Path, cache: Path, lock: str, python: PythonInfo
) -> Collected:
    assert spec.django is not None
    venv = cache / "buildenvs" / env_key(lock, [], python)
    ensure_venv(conn, venv, lock, python, cache, [], "the build venv (collectstatic)")
    store = cache / "django-static"
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".collect.", dir=store) as tmp:
        work = Path(tmp)
        root = work / STATIC_DIR
        paths = [str(code)]
        settings = spec.django.settings
        if spec.django.wrap:
            (work / f"{WRAPPER_MODULE}.py").write_text(
                render.django_settings_module(spec.django.settings)
            )
            paths.insert(0, str(work))
            settings = WRAPPER_MODULE
        env = {
            **build_env(spec),
            **spec.env,
            "PATH": f"{venv}/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(venv),
            "PYTHONPATH": os.pathsep.join(paths),
            "PYTHONDONTWRITEBYTECODE": "1",
            "DJANGO_SETTINGS_MODULE": settings,
            "DJANGO_STATIC_ROOT": str(root),
        }
        argv = (str(venv / "bin" / "python"), "-c", SCRIPT, str(store))
        result = conn.run(Command(argv, cwd=str(code), env=env, timeout=COLLECT_TIMEOUT))
        if not result.ok:  # (the script itself is no news to the user: its output is)
            raise BuildError(
                f"collectstatic could not run at build time with the settings {settings} "
                f"(wrapping {spec.django.settings}; exit {result.exit_code}):\n"
                f"{result.output_tail(40)}",
                hint=_hint(spec, result.exit_code),
            )
        line = next((x for x in reversed(result.stdout.splitlines()) if x.startswith(MARKER)), None)
        if line is None:
            raise fail(result, "collectstatic said nothing shipyard understands")
        told = json.loads(line.removeprefix(MARKER))
        if not told["installed"]:
            return Collected(told["static_url"], None)
        kept = store / told["key"]
        if told.get("collected"):
            root.mkdir(exist_ok=True)  # a project may have no static file at all
            (root / ".complete").touch()
            shutil.rmtree(kept, ignore_errors=True)
            root.rename(kept)
    os.utime(kept)  # the newest used are kept
    _prune(store)
    return Collected(told["static_url"], kept)


def _hint(spec: Spec, exit_code: int | None) -> str:
    if exit_code == 3:
        return (
            "With django.wrap = false the settings must read STATIC_ROOT from the environment: "
            "STATIC_ROOT = os.environ.get('DJANGO_STATIC_ROOT', BASE_DIR / 'staticfiles'). "
            "Nothing was deployed."
        )
    return (
        "The build imports the project's settings to collect its static files, with the "
        "spec's [env] and a stand-in DJANGO_SECRET_KEY, but none of its [secrets]: put what "
        "the settings need at import time in [env], or give it a default there; or set "
        "django.collectstatic = false. Nothing was deployed."
    )


def _prune(store: Path) -> None:
    sets = sorted(
        (p for p in store.iterdir() if (p / ".complete").exists()),
        key=lambda p: p.stat().st_mtime,
    )
    for old in sets[:-KEPT]:
        shutil.rmtree(old, ignore_errors=True)
    remembered = sorted((store / "inputs").glob("*"), key=lambda p: p.stat().st_mtime)
    for old in remembered[: -KEPT * 8]:
        old.unlink(missing_ok=True)


def link_into(collected: Path, dest: Path) -> None:
    """The collected files at `dest` (hard links where the filesystem allows)."""
    shutil.copytree(
        collected, dest, copy_function=_link_or_copy, ignore=shutil.ignore_patterns(".complete")
    )


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
