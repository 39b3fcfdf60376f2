"""Write a commented shipyard.toml from what detection found; comments come from the spec model."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shipyard.errors import SpecError, UsageError
from shipyard.project.detect import Detected
from shipyard.spec.model import (
    SPEC_FILE,
    BuildSpec,
    DjangoSpec,
    HealthcheckSpec,
    ServerSpec,
    Spec,
    TestsSpec,
)


def toml_value(value: Any) -> str:
    """A TOML literal: JSON's string escapes are valid TOML basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def _describe(model: type[BaseModel], key: str) -> str:
    return model.model_fields[key].description or ""


def _line(model: type[BaseModel], key: str, value: Any, active: bool) -> list[str]:
    prefix = "" if active else "# "
    return [f"# {_describe(model, key)}", f"{prefix}{key} = {toml_value(value)}"]


def render_spec_toml(found: Detected) -> str:
    lines = [
        "# shipyard spec, written by 'shipyard init'. Every key: docs/spec.md.",
        f"# Detected: {found.framework} app, {found.kind}, served by {found.server}.",
        "",
    ]
    lines += _line(Spec, "name", found.name, True)
    lines += _line(Spec, "entry", found.entry, True)
    if found.alternatives:
        lines.append("# other candidates: " + ", ".join(found.alternatives))
    if found.kind == "aiohttp":  # aiohttp's worker runs it: neither WSGI nor ASGI
        lines += _line(Spec, "kind", "wsgi", False)
    else:
        lines += _line(Spec, "kind", found.kind, True)
    lines += _line(Spec, "listen", "127.0.0.1:8080", False)
    lines += _line(Spec, "keep", 5, False)
    for key, command in (("setup", found.setup), ("release", found.release)):
        lines += _line(Spec, key, command, bool(command))
        if key in found.why:
            why = textwrap.wrap(f"proposed: {found.why[key]}", 94)
            lines[-1:-1] = [f"# {line}" for line in why]
    lines += _line(Spec, "persistent", found.persistent, bool(found.persistent))
    lines += _line(Spec, "persistent_files", found.persistent_files, bool(found.persistent_files))
    lines.append("# Flask's instance folder persists without configuration.")
    lines += ["", "[server]"]
    lines += _line(ServerSpec, "type", found.server, True)
    lines += _line(ServerSpec, "workers", found.workers, bool(found.workers))
    lines += ["", "[tests]"]
    lines += _line(TestsSpec, "enabled", found.tests_enabled, True)
    lines += _line(TestsSpec, "requirements", found.test_requirements, True)
    command = found.tests_command or "python -m pytest -q"
    lines += _line(TestsSpec, "command", command, bool(found.tests_command))
    lines += ["", "[healthcheck]"]
    lines += _line(HealthcheckSpec, "path", "/", False)
    lines += ["", "[build]"]
    lines += _line(BuildSpec, "requirements", found.requirements, True)
    lines += _line(BuildSpec, "mode", "auto", False)
    if found.build.reason:
        lines.append(f"# auto: {found.build.reason}")
    if found.django is not None:
        lines += ["", "# Django: what shipyard does for it, docs/django.md", "[django]"]
        lines += _line(DjangoSpec, "settings", found.django.settings, True)
        lines += _line(DjangoSpec, "wrap", True, False)
        lines += _line(DjangoSpec, "collectstatic", True, False)
        media = found.django.media_url
        lines += _line(DjangoSpec, "media_url", media, media != "/media/")
    lines += ["", f"# {_describe(Spec, 'static')}", "[static]"]
    lines += [f"{toml_value(prefix)} = {toml_value(d)}" for prefix, d in found.static.items()]
    lines += ["", f"# {_describe(Spec, 'processes')}"]
    if found.processes:  # from the Procfile
        lines.append("[processes]")
        lines += [f"{name} = {toml_value(command)}" for name, command in found.processes.items()]
    else:
        lines += ["# [processes]", '# worker = "python worker.py"']
    lines += ["", f"# {_describe(Spec, 'env')}", "[env]"]
    lines += ["", f"# {_describe(Spec, 'secrets')}", "[secrets]"]
    lines += [f'{name} = "generate"' for name in found.secrets] or ['# SECRET_KEY = "generate"']
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # never write a file that does not parse
    return text


def init_summary(found: Detected) -> list[str]:
    """What `init` chose that the user should know: the entry, its framework, kind and
    server and why, the build mode and why, where the dependency pins come from and why, what
    it made persistent, and its notes."""
    how = f": {found.how}" if found.how else ""
    lines = [
        f"entry: {found.entry} ({found.framework}, {found.kind}, served by {found.server}){how}"
        + (f"; chosen: {found.chosen}" if found.chosen else "")
    ]
    if found.alternatives:
        lines.append(f"entry: other candidates: {', '.join(found.alternatives)}")
    lines += [f"build: {found.build.reason}"] if found.build.reason else []
    kept = [f"{d}/" for d in found.persistent] + found.persistent_files
    if kept:
        lines.append(
            f"persistent: {', '.join(kept)} (beside the code; kept in shared/data across "
            "releases, never shipped)"
        )
    if found.build.is_tree and found.framework in ("flask", "quart"):
        lines.append("persistent: instance/ (Flask's instance folder, without configuration)")
    if found.deps.kind == "none":
        lines.append(f"dependencies: none declared ({found.deps.why})")
    else:
        lines.append(f"dependencies: pinned from {found.deps.file} ({found.deps.why})")
    if found.django is not None:
        lines += _django_summary(found)
    lines += [f"note: {note}" for note in found.notes]
    return lines


def _django_summary(found: Detected) -> list[str]:
    """What `init` set up for a Django project, one line each."""
    django = found.django
    assert django is not None
    where = f" (from {django.settings_from})" if django.settings_from else ""
    tests = found.tests_command or "pytest (pytest-django)"
    return [
        f"django: settings {django.settings}{where}, wrapped by shipyard_django_settings "
        "(DJANGO_SETTINGS_MODULE); ALLOWED_HOSTS and CSRF_TRUSTED_ORIGINS from `domains` "
        "and `listen`, DEBUG off",
        f"django: served by {django.served}",
        "django: collectstatic at build time into the release, served by nginx at "
        "STATIC_URL (hashed names cached for a year)",
        f"django: uploads (MEDIA_ROOT) in shared/media, served by nginx at {django.media_url}; "
        "the SQLite database in shared/data: both survive deploys and rollbacks",
        "django: SECRET_KEY from DJANGO_SECRET_KEY, generated once (kept in the app's config, "
        "0600)",
        f"django: tests run with `{tests}`" if found.tests_enabled else "django: no tests found",
    ]


def write_spec(project: Path, text: str, *, force: bool) -> Path:
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        try:
            existing = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError:
            existing = {}
        if "shipyard" in existing.get("tool", {}):
            raise SpecError(
                f"{pyproject} already holds the spec under [tool.shipyard].",
                hint="Edit it there, or remove that table before running 'shipyard init'.",
            )
    path = project / SPEC_FILE
    if path.exists() and not force:
        raise UsageError(
            f"{path} exists already.", hint="Pass --force to overwrite it with a fresh one."
        )
    path.write_text(text, encoding="utf-8")
    return path
