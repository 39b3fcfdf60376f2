"""docs/spec.md, generated from the spec models so the reference never drifts from the code."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from shipyard.spec.kubernetes import AutoscaleSpec, KubernetesSpec, ResourcesSpec
from shipyard.spec.model import (
    BuildSpec,
    DjangoSpec,
    HealthcheckSpec,
    ProcessSpec,
    ServerSpec,
    Spec,
    TargetSpec,
    TestsSpec,
    TlsSpec,
)

INTRO = """\
# The shipyard spec

The spec lives in `shipyard.toml` at the project root, or under `[tool.shipyard]` in
pyproject.toml (`shipyard.toml` wins when both exist). `shipyard init` writes a commented one.
Unknown keys are errors, and every error names the file, the key and the value. This page is
generated from the spec models by `scripts/gen_spec_docs.py`, and a unit test keeps it in sync.

Secrets never go in the spec: list their names under `[secrets]` and set them with
`shipyard config set KEY=VALUE`. They are stored 0600 and shown masked. Flask's instance
folder persists without configuration: it lives under each release venv's `var/`, which
shipyard links to the app's `shared/var`, and for an app run from its tree, in `instance/`
beside its code, which is linked to the same place.

A project without packaging metadata (no `[project]` or `[build-system]` in pyproject.toml,
no setup.py, no setup.cfg `[metadata]`) is deployed as its source tree (`build.mode`): the
release runs in its copy of the tree, with it on `PYTHONPATH`, so `manage.py`, `python
worker.py` and files opened by relative path work as they do on your machine. What such an
app writes beside its code must be listed to survive a release: `persistent` directories
(`uploads/`, `media/`) and `persistent_files` (a SQLite database). Each is a link from the
tree into `shared/data/`, and is left out of the release; `shipyard init` lists the usual
ones it finds.

`shipyard init` finds `entry`, `kind` and `server.type` by reading the code (never running
it). It looks for: `app` or `application` made by `Flask(...)`, `Quart(...)`, `FastAPI(...)`,
`Starlette(...)`, `Litestar(...)`, aiohttp's `web.Application(...)`, Falcon's or Bottle's app,
or by a call wrapping one (middleware such as `ProxyFix(...)` keeps its kind; `WsgiToAsgi`,
Starlette's `WSGIMiddleware`, `socketio.ASGIApp`, `SentryAsgiMiddleware` serve it over ASGI,
`socketio.WSGIApp` over WSGI); a factory returning one (`def create_app()`, `async def
make_app()`, callable with no argument); a `wsgi.py`, `asgi.py`, `app.py`, `main.py` or
`server.py` that imports its app or factory from the project's package (`from myapp import
create_app` then `app = create_app()`: entry `wsgi:app`); Django's `wsgi.py`/`asgi.py` (ASGI
when the settings need it: Channels); and first of all a Procfile's `web:` line. When several
are found, the project's `wsgi.py`/`asgi.py` comes first, then a package's factory, then an
entry script importing the app, a factory in a module, an app made at module level, and a
script calling another module's factory. WSGI apps get `gunicorn`, ASGI apps `uvicorn`, aiohttp
apps `aiohttp` (the spec's `kind` is then left unset: it is not read). init says which entry it
chose, how the code makes it and why, and lists the other candidates in the written file.

```toml
name = "flaskr"
entry = "flaskr:create_app()"
setup = "flask --app flaskr init-db"

[static]
"/static" = "flaskr/static"

[secrets]
FLASKR_SECRET_KEY = "generate"

[healthcheck]
path = "/health"
```
"""

SECTIONS: list[tuple[str, type[BaseModel]]] = [
    ("[server]", ServerSpec),
    ("[tests]", TestsSpec),
    ("[healthcheck]", HealthcheckSpec),
    ("[build]", BuildSpec),
    ("[tls] (HTTPS; also per target as targets.NAME.tls; docs/tls.md)", TlsSpec),
    ("[django] (a Django project; docs/django.md)", DjangoSpec),
    ("[processes.NAME] (a table; a bare command string is `command` alone)", ProcessSpec),
    ("[kubernetes] (`shipyard export kubernetes`; docs/engines.md)", KubernetesSpec),
    ("[kubernetes.resources] (each web and process pod)", ResourcesSpec),
    ("[kubernetes.autoscale] (present: a HorizontalPodAutoscaler for web)", AutoscaleSpec),
]


def _default(info: Any) -> str:
    if info.default_factory is not None:
        value = info.default_factory()
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "unset"
    return f"`{json.dumps(value.value if hasattr(value, 'value') else value)}`"


def _table(model: type[BaseModel], skip: set[str]) -> list[str]:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        rows.append(f"| `{name}` | {_default(info)} | {info.description or ''} |")
    return rows


def render() -> str:
    lines = [INTRO, "## Top level", ""]
    lines += _table(Spec, {"server", "tests", "healthcheck", "build", "targets", "tls"})
    for title, model in SECTIONS:
        lines += ["", f"## {title}", "", *_table(model, set())]
    lines += [
        "",
        "## [targets.NAME]",
        "",
        "Targets other than the embedded `local` one come with SSH hosts. `local` may set:",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
        '| `base_dir` | `""` | Base directory; default $SHIPYARD_HOME or XDG data. |',
        '| `listen` | `""` | Overrides the app\'s `listen` on this target. |',
        "",
        "A target with `hosts` is an ssh target (a fleet; see the README's fleet section), with",
        "these keys:",
        "",
        *_table(TargetSpec, {"type"}),
    ]
    return "\n".join(lines) + "\n"
