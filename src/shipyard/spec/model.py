"""The app spec: `shipyard.toml` or `[tool.shipyard]` in pyproject.toml, loaded and validated."""

from __future__ import annotations

import re
import shlex
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shipyard.errors import SpecError
from shipyard.spec.address import SSHAddress
from shipyard.spec.kubernetes import KubernetesSpec

SPEC_FILE = "shipyard.toml"
APP_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENTRY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*(\(\))?$")
PROCESS_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,19}$")
RESERVED_PROCESSES = {"web", "release"}
# Variables shipyard sets itself; a user overriding them would break the release layout.
RESERVED_ENV = {"PATH", "VIRTUAL_ENV", "PYTHONPATH", "SHIPYARD_RELEASE", "SHIPYARD_APP"}
# Healthy answers of a check whose path is set and whose `status` is not.
STRICT_STATUSES = (200, 204, 301, 302, 303, 307, 308)


class AppKind(StrEnum):
    WSGI = "wsgi"
    ASGI = "asgi"


class ServerType(StrEnum):
    """The app servers shipyard runs; each serves WSGI apps, ASGI apps or aiohttp apps."""

    GUNICORN = "gunicorn"
    UWSGI = "uwsgi"
    UVICORN = "uvicorn"  # uvicorn's own process manager
    GUNICORN_UVICORN = "gunicorn-uvicorn"  # gunicorn with uvicorn's worker
    GUNICORN_ASGI = "gunicorn-asgi"  # gunicorn's native asyncio ASGI worker (gunicorn >= 27)
    GRANIAN = "granian"
    AIOHTTP = "aiohttp"  # gunicorn with aiohttp's worker

    @property
    def serves(self) -> str:
        """What the server runs: 'wsgi', 'asgi' or 'aiohttp'."""
        if self in (ServerType.GUNICORN, ServerType.UWSGI):
            return "wsgi"
        return "aiohttp" if self is ServerType.AIOHTTP else "asgi"

    @property
    def on_gunicorn(self) -> bool:
        """gunicorn is the process manager, its config file in the release."""
        return self in (
            ServerType.GUNICORN,
            ServerType.GUNICORN_UVICORN,
            ServerType.GUNICORN_ASGI,
            ServerType.AIOHTTP,
        )


# The server an ASGI app gets when its spec names none: among the fastest through nginx in
# bench/servers.py (BENCHMARKS.md, "App servers through nginx"), and it closes a drained
# WebSocket with code 1012, which granian (faster there) does not.
DEFAULT_ASGI_SERVER = ServerType.UVICORN
ASGI_SERVERS = tuple(t.value for t in ServerType if t.serves == "asgi")
WSGI_SERVERS = tuple(t.value for t in ServerType if t.serves == "wsgi")


class _Strict(BaseModel):
    # strict: TOML has real booleans, integers and strings, so `workers = true` or
    # `keep = "5"` is a mistake to name, not a value to coerce (enums take their names)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ServerSpec(_Strict):
    """How the app server runs."""

    type: ServerType = Field(
        default=ServerType.GUNICORN,
        strict=False,
        description="App server. WSGI: gunicorn, uwsgi. ASGI: uvicorn (its own process "
        "manager), gunicorn-uvicorn (gunicorn with uvicorn's worker), gunicorn-asgi (gunicorn "
        "27's native ASGI worker), granian. aiohttp: gunicorn with aiohttp's worker. Unset: "
        f"gunicorn, or {DEFAULT_ASGI_SERVER.value} for kind = 'asgi'.",
    )
    workers: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Worker processes; 0 means 2 x CPU cores + 1, at most 8.",
    )
    threads: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Threads per worker (gunicorn's gthread, uWSGI); the asyncio servers "
        "have none.",
    )
    timeout: int = Field(
        default=30,
        ge=1,
        le=3600,
        description="Seconds a request may take: nginx gives up on it 5 s later (504); "
        "gunicorn's workers are also restarted when silent that long, uWSGI's requests "
        "killed (harakiri).",
    )
    graceful_timeout: int = Field(
        default=20, ge=1, le=3600, description="Seconds an old release gets to finish its requests."
    )
    version: str = Field(
        default="",
        description="Version specifier for the server package, e.g. '>=23,<28'; empty: latest.",
    )
    websocket_timeout: int = Field(
        default=3600,
        ge=1,
        le=86400,
        description="Seconds a WebSocket may stay silent (no frame either way) before nginx "
        "closes it; plain requests keep `timeout`. Every server but uwsgi.",
    )
    websocket_drain: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="Seconds a WebSocket open on the old release stays open after a deploy "
        "(new ones reach the new release at once); then the old server stops and closes it: "
        "uvicorn and gunicorn-uvicorn with code 1012 (service restart); gunicorn-asgi, "
        "granian and aiohttp drop the connection with no close frame. The wait ends as soon "
        "as nothing is open.",
    )


class TestsSpec(_Strict):
    """The test gate run before every build."""

    __test__ = False  # not a pytest test class

    command: str = Field(default="python -m pytest -q", description="Command run in a clean venv.")
    requirements: list[str] = Field(
        default_factory=lambda: ["pytest"], description="Packages the tests need besides the app's."
    )
    enabled: bool = Field(
        default=True, description="Run the tests on deploy; --skip-tests overrides."
    )

    @field_validator("command")
    @classmethod
    def _parses(cls, value: str) -> str:
        return _check_command(value)


class ProcessSpec(_Strict):
    """A long-running process beside the web server, e.g. a queue worker."""

    command: str = Field(description="The command, run in the release's environment.")
    count: int = Field(
        default=1,
        ge=0,
        le=64,
        description="How many of it run; 0 keeps it configured but stopped "
        "(`shipyard scale NAME=N` overrides it on the hosts).",
    )
    startsecs: int = Field(
        default=2,
        ge=1,
        le=60,
        description="Seconds it must stay up after a start to count as started: one that "
        "exits sooner is crash-looping, and fails the deploy.",
    )

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        return _check_command(value)


class HealthcheckSpec(_Strict):
    """How a new release proves it is up before it takes traffic.

    With neither `path` nor `status` set, `/` is asked and any answer below 500 will do: a
    404 proves the app loaded and routes requests, and apps need not have a `/` route. Either
    key set makes the check strict: only the listed statuses count.
    """

    path: str | None = Field(
        default=None,
        description="URL path requested. Unset: `/`, where any status below 500 counts as "
        "healthy (a 404 proves the app loaded), unless `status` is set.",
    )
    timeout: float = Field(
        default=30, gt=0, le=600, description="Seconds to wait for a good answer."
    )
    status: list[Annotated[int, Field(ge=100, le=599)]] | None = Field(
        default=None,
        min_length=1,
        description="HTTP statuses that count as healthy. Unset: "
        + ", ".join(map(str, STRICT_STATUSES))
        + " when `path` is set; any status below 500 when neither is.",
    )

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"/[^\s\x00-\x1f\x7f]*", value):
            raise ValueError("must start with '/' and hold no spaces or control characters")
        return value

    @property
    def request_path(self) -> str:
        """The URL path the check asks for."""
        return self.path or "/"

    @property
    def healthy_statuses(self) -> tuple[int, ...] | None:
        """The statuses that count as healthy; None: any below 500 (the default check)."""
        if self.path is None and self.status is None:
            return None
        return tuple(STRICT_STATUSES if self.status is None else self.status)


class BuildSpec(_Strict):
    """Where the dependency pins come from."""

    requirements: str = Field(
        default="auto",
        description="'auto' (uv.lock, then poetry.lock, then requirements.txt, then pyproject "
        "dependencies), 'pyproject', or a path to a requirements file, uv.lock or poetry.lock.",
    )
    exclude: list[str] = Field(
        default_factory=list, description="Extra glob patterns left out of the source hash."
    )
    mode: Literal["auto", "tree", "wheel"] = Field(
        default="auto",
        description="What the release holds: 'wheel' (the app built as a package, PEP 517), "
        "'tree' (its source files, run in place), or 'auto': a wheel when the project has "
        "packaging metadata (pyproject [build-system] or [project], setup.py, setup.cfg "
        "[metadata]), else its tree; also a tree: a uv app ([project] and uv.lock, no "
        "[build-system]), [tool.uv] package = false, [tool.poetry] package-mode = false.",
    )


MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
URL_PREFIX_RE = re.compile(r"^/[\w\-./]*$")


class DjangoSpec(_Strict):
    """A Django project: what shipyard provides it (docs/django.md). The table present means
    Django; `shipyard init` writes it for a Django project."""

    settings: str = Field(
        description="The project's settings module, e.g. 'mysite.settings' (init reads it from "
        "manage.py or wsgi.py)."
    )
    wrap: bool = Field(
        default=True,
        description="Run the release with DJANGO_SETTINGS_MODULE = 'shipyard_django_settings', "
        "a module shipyard writes into the release that imports `settings` and overrides "
        "from the DJANGO_* variables (hosts, secret key, static and media roots, the SQLite "
        "file's place, DEBUG off); false: `settings` itself, which reads them.",
    )
    collectstatic: bool = Field(
        default=True,
        description="Run `collectstatic` at build time into the release, served by nginx at "
        "STATIC_URL (hashed names cached for a year).",
    )
    media_url: str = Field(
        default="/media/",
        description="MEDIA_URL: nginx serves the uploads kept in shared/media (which survives "
        "deploys and rollbacks) there.",
    )

    @field_validator("settings")
    @classmethod
    def _settings(cls, value: str) -> str:
        if not MODULE_RE.match(value):
            raise ValueError("must be a dotted module name like 'mysite.settings'")
        return value

    @field_validator("media_url")
    @classmethod
    def _media_url(cls, value: str) -> str:
        if not URL_PREFIX_RE.match(value) or value == "/":
            raise ValueError("must be a URL path like '/media/', not '/' alone")
        return value if value.endswith("/") else value + "/"


LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
# Mozilla's "intermediate" profile: HSTS's max-age there is two years.
HSTS_DEFAULT_MAX_AGE = 63072000


class TlsSpec(_Strict):
    """HTTPS: a certificate the user provides (`mode = "files"`) or one obtained and renewed
    with ACME (`mode = "acme"`, HTTP-01 answered by nginx). docs/tls.md."""

    mode: Literal["files", "acme"] = Field(
        description="files: `certificate` and `key` given here; acme: obtained from "
        "`directory` (Let's Encrypt by default) and renewed on the host."
    )
    certificate: str = Field(
        default="",
        description="files: the certificate chain (PEM, leaf first) on the deploying "
        "machine; relative paths are from the project. Sent to the hosts 0600.",
    )
    key: str = Field(
        default="",
        description="files: its private key (PEM) on the deploying machine; never in the "
        "artifact or any output, sent to the hosts 0600.",
    )
    email: str = Field(default="", description="acme: the account's contact address.")
    directory: str = Field(
        default=LETS_ENCRYPT,
        description="acme: the ACME directory URL (Let's Encrypt production by default; its "
        "staging, or a test server, for trials).",
    )
    ca_bundle: str = Field(
        default="",
        description="acme: a CA bundle (PEM, on the deploying machine) that the ACME "
        "directory's own HTTPS certificate is checked against, for a private or test ACME "
        "server; empty: the system's CAs.",
    )
    listen: str = Field(
        default="",
        description="Address nginx serves HTTPS on, 'host:port'; empty: the plain address "
        "with port 443 for port 80 and 8443 for port 8080 (any other port must set it).",
    )
    redirect: bool = Field(
        default=True,
        description="Answer plain HTTP with a permanent redirect to HTTPS (ACME's "
        "challenges excepted).",
    )
    hsts: bool | int = Field(
        default=False,
        description="Send Strict-Transport-Security: true for a max-age of two years, or "
        "the max-age in seconds; false: not sent (once sent, browsers refuse plain HTTP "
        "for that long: opt in when HTTPS is there to stay).",
    )

    @field_validator("hsts", mode="before")
    @classmethod
    def _hsts(cls, value: Any) -> Any:
        # one message for the union, not one per member type
        if not isinstance(value, bool) and not (
            isinstance(value, int) and 0 < value <= 10 * 365 * 86400
        ):
            raise ValueError("must be true, false, or a max-age in seconds up to ten years")
        return value

    @field_validator("listen")
    @classmethod
    def _tls_listen(cls, value: str) -> str:
        return check_listen(value) if value else value

    @field_validator("certificate", "key", "ca_bundle")
    @classmethod
    def _path(cls, value: str) -> str:
        if "\x00" in value:
            raise ValueError("holds a NUL character")
        return value

    @model_validator(mode="after")
    def _mode_keys(self) -> TlsSpec:
        given = {
            key for key in ("certificate", "key", "email", "ca_bundle") if getattr(self, key)
        } | ({"directory"} if self.directory != LETS_ENCRYPT else set())
        own = {"files": {"certificate", "key"}, "acme": {"email", "directory", "ca_bundle"}}
        if stray := sorted(given - own[self.mode]):
            raise ValueError(
                f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} not read with "
                f"mode = '{self.mode}': remove {'it' if len(stray) == 1 else 'them'}"
            )
        if self.mode == "files" and not (self.certificate and self.key):
            raise ValueError(
                "mode = 'files' needs `certificate` and `key`: paths to PEM files, e.g. "
                "certificate = 'certs/fullchain.pem', key = 'certs/privkey.pem'"
            )
        if self.mode == "acme":
            if not EMAIL_RE.match(self.email):
                raise ValueError("mode = 'acme' needs `email`: the ACME account's contact address")
            if not re.fullmatch(r"https://[^\s\x00-\x1f\x7f]+", self.directory):
                raise ValueError(
                    f"directory {self.directory!r} must be an https:// URL of an ACME directory"
                )
        return self

    @property
    def hsts_max_age(self) -> int:
        """Seconds of Strict-Transport-Security; 0: not sent."""
        if isinstance(self.hsts, bool):
            return HSTS_DEFAULT_MAX_AGE if self.hsts else 0
        return self.hsts

    def https_listen(self, plain: str) -> str:
        """Where HTTPS is served, next to the plain address `plain`."""
        if self.listen:
            return self.listen
        host, _, port = plain.rpartition(":")
        derived = {"80": "443", "8080": "8443"}.get(port)
        if derived is None:
            raise SpecError(
                f"HTTPS needs an address: the plain one, {plain}, has no usual HTTPS port "
                "beside it.",
                hint="Set tls.listen, e.g. listen = '127.0.0.1:8443'.",
            )
        return f"{host}:{derived}"


EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class TargetSpec(_Strict):
    """A place to deploy to: this machine (`local`), or hosts reached over SSH (`ssh`)."""

    type: Literal["local", "ssh"] = Field(
        default="local", description="local or ssh; ssh when `hosts` is given."
    )
    base_dir: str = Field(
        default="",
        description="Base directory; local: $SHIPYARD_HOME or XDG data; ssh: /srv/shipyard "
        "('{host}' in it is replaced by each host's name).",
    )
    listen: str = Field(
        default="",
        description="nginx's address; local: the app's `listen`; ssh: 0.0.0.0:80 (web and lb).",
    )
    hosts: list[str] = Field(
        default_factory=list,
        description="Web hosts: '[user@]host[:port]' or aliases from the SSH config.",
    )
    lb: str = Field(
        default="", description="A host whose nginx load-balances across the web hosts."
    )
    strategy: Literal["all-at-once", "rolling"] = Field(
        default="all-at-once",
        description="all-at-once: stage everywhere, then switch everywhere; rolling: in batches, "
        "each drained from the lb while it switches.",
    )
    batch: int = Field(default=1, ge=1, description="Hosts per batch in a rolling deploy.")
    parallel: int = Field(default=8, ge=1, le=64, description="Hosts worked on at once.")
    on_failure: Literal["keep", "rollback"] = Field(
        default="keep",
        description="When a host fails after others switched: keep them on the new release "
        "(re-run the deploy to finish) or roll them back.",
    )
    release_on: Literal["first", "each"] = Field(
        default="first",
        description="Run the release command (and, on the first deploy, the setup command) on "
        "the first host only (a shared database) or on each host (data kept per host).",
    )
    nginx: Literal["managed", "system"] = Field(
        default="managed",
        description="managed: shipyard's own nginx under base_dir (no root needed); system: the "
        "host's nginx, one server block per app in /etc/nginx/conf.d, routed by `domains`.",
    )
    process_manager: Literal["supervisor", "systemd"] = Field(
        default="supervisor",
        description="What keeps the app's processes running: supervisor (shipyard's own "
        "supervisord under base_dir, no root needed) or systemd (a template unit per process "
        "type, an instance per slot, hardened, logs in journald; needs root and systemd as "
        "PID 1 on the hosts; docs/systemd.md).",
    )
    ssh_config: str = Field(default="", description="An ssh_config file instead of ~/.ssh/config.")
    identity_file: str = Field(default="", description="A private key file for these hosts.")
    trust_new_host_keys: bool = Field(
        default=False,
        description="Accept an unknown host key on first use; a changed key is always refused.",
    )
    app_user: str = Field(
        default="",
        description="User the app's processes run as when shipyard runs as root; ssh "
        "targets: 'shipyard' (`provision` creates it); local: the user running shipyard.",
    )
    tls: TlsSpec | None = Field(
        default=None,
        description="HTTPS for this target, over the top-level [tls]: see [tls].",
    )
    agent_linger: float = Field(
        default=600,
        ge=0,
        le=86400,
        description="ssh targets: seconds shipyard's agent stays resident on a host after a "
        "command (on a socket only root or the login user can reach), so the next command "
        "starts warm; 0: it exits with each command.",
    )

    @model_validator(mode="before")
    @classmethod
    def _ssh_when_hosts(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("hosts") and "type" not in data:
            return {**data, "type": "ssh"}
        return data

    def run_user(self) -> str:
        """The app user as configured, with the ssh default filled in."""
        return self.app_user or ("shipyard" if self.type == "ssh" else "")

    @model_validator(mode="after")
    def _ssh(self) -> TargetSpec:
        if self.hosts and self.type == "local":
            raise ValueError("a local target has no `hosts`; use type = 'ssh'")
        if self.type == "ssh" and not self.hosts:
            raise ValueError("an ssh target needs `hosts`: a list like ['web1.example']")
        for host in [*self.hosts, *([self.lb] if self.lb else [])]:
            SSHAddress.parse(host)
        if self.lb and self.lb in self.hosts:
            raise ValueError(f"{self.lb!r} is both the lb and a web host; use separate hosts")
        if len(set(self.hosts)) != len(self.hosts):
            raise ValueError("`hosts` lists a host twice")
        if self.listen:
            check_listen(self.listen)
        if self.type == "ssh" and self.base_dir and not self.base_dir.startswith("/"):
            raise ValueError(f"base_dir {self.base_dir!r} must be an absolute path on the hosts")
        if self.base_dir:  # `{host}` is ours: each host's name, checked as a host
            check_config_path(self.base_dir.replace("{host}", "host"), "base_dir")
        if self.app_user and not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", self.app_user):
            raise ValueError(f"app_user {self.app_user!r} is not a valid user name")
        return self


class Spec(_Strict):
    """A validated app spec. Field descriptions feed `shipyard init` and docs/spec.md."""

    name: str = Field(
        description="App name: lowercase letters, digits and '-', starting with a letter."
    )
    entry: str = Field(
        description="Entry point: 'pkg.module:app' or an app factory 'pkg:create_app()'."
    )
    kind: AppKind = Field(
        default=AppKind.WSGI,
        strict=False,
        description="wsgi or asgi (detected by `init`); asgi when server.type names an ASGI "
        "server. An aiohttp app (server.type = 'aiohttp') is neither: its kind is not read.",
    )
    listen: str = Field(
        default="127.0.0.1:8080", description="Address nginx listens on: 'host:port'."
    )
    domains: list[str] = Field(
        default_factory=list, description="server_name values; empty: any host name."
    )
    keep: int = Field(default=5, ge=1, le=100, description="Releases kept on disk for rollback.")
    rollback_window: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="Seconds the previous release keeps running after a switch (local "
        "target), so that a rollback meanwhile is an nginx switch only; its processes stay in "
        "memory that long. 0: it stops once nginx's old workers are done.",
    )
    python: str = Field(
        default="",
        description="Python for the release venv: a version such as '3.12' (the first "
        "interpreter of that version that runs, from pythonX.Y on PATH, /usr/bin, "
        "/usr/local/bin, uv's managed ones, then python3) or a path; empty: shipyard's own.",
    )
    setup: str = Field(
        default="",
        description="One-time command (e.g. creating the database) run only on the app's first "
        "deploy on a target, before `release`, against the new release before it serves; once "
        "it has succeeded it never runs again there (`destroy --purge` forgets it).",
    )
    release: str = Field(
        default="",
        description="Command run on every deploy against the new release before it serves, "
        "e.g. migrations: it must be safe to repeat (one-time work goes in `setup`).",
    )
    static: dict[str, str] = Field(
        default_factory=dict, description="URL prefix -> directory in the project, served by nginx."
    )
    persistent: list[str] = Field(
        default_factory=list,
        description="Directories (relative to the app's working directory: the release, or "
        "its copy of the source tree) that survive deploys and rollbacks, kept in shared/data.",
    )
    persistent_files: list[str] = Field(
        default_factory=list,
        description="Files (relative, like `persistent`) that survive deploys and rollbacks, "
        "e.g. a SQLite database 'db.sqlite3': each is a link into shared/data.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Plain environment variables; secrets go in `config set`."
    )
    secrets: dict[str, Literal["required", "generate"]] = Field(
        default_factory=dict,
        description="Secret variables the app needs, kept out of this file: 'required' ones "
        "must be "
        "set with `shipyard config set` before a deploy; 'generate' ones get a random value "
        "once, kept in the app's config (0600).",
    )
    processes: dict[str, ProcessSpec] = Field(
        default_factory=dict,
        description="Extra long-running processes: a command, e.g. worker = 'celery ...', "
        "or a table, worker = { command = 'celery ...', count = 2 }.",
    )
    django: DjangoSpec | None = Field(
        default=None, description="A Django project's settings: see [django]."
    )
    tls: TlsSpec | None = Field(
        default=None,
        description="HTTPS on every target (a target's own `tls` replaces it): see [tls].",
    )
    server: ServerSpec = Field(default_factory=ServerSpec)
    tests: TestsSpec = Field(default_factory=TestsSpec)
    healthcheck: HealthcheckSpec = Field(default_factory=HealthcheckSpec)
    build: BuildSpec = Field(default_factory=BuildSpec)
    targets: dict[str, TargetSpec] = Field(default_factory=dict)
    kubernetes: KubernetesSpec = Field(
        default_factory=KubernetesSpec,
        description="What `shipyard export kubernetes` renders: see [kubernetes].",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not APP_NAME_RE.match(value):
            raise ValueError(
                "must be 1-40 lowercase letters, digits and '-', starting with a letter"
            )
        return value

    @field_validator("entry")
    @classmethod
    def _entry(cls, value: str) -> str:
        if not ENTRY_RE.match(value):
            raise ValueError("must look like 'package.module:app' or 'package:create_app()'")
        return value

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return check_listen(value)

    @field_validator("setup", "release")
    @classmethod
    def _one_off_command(cls, value: str) -> str:
        return _check_command(value) if value else value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            check_env_pair(key, item)
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            check_env_pair(key, "")
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            check_domain(domain)
        return value

    @field_validator("static")
    @classmethod
    def _static(cls, value: dict[str, str]) -> dict[str, str]:
        for prefix, directory in value.items():
            if not URL_PREFIX_RE.match(prefix):
                raise ValueError(f"URL prefix {prefix!r} must start with '/' and be a plain path")
            _check_relative(directory)
        return value

    @field_validator("persistent", "persistent_files")
    @classmethod
    def _persistent(cls, value: list[str]) -> list[str]:
        for directory in value:
            _check_relative(directory)
        return value

    @model_validator(mode="after")
    def _persistent_apart(self) -> Spec:
        """Each persistent path is one link in the release: none twice, none inside another."""
        paths = [Path(p) for p in (*self.persistent, *self.persistent_files)]
        for index, path in enumerate(paths):
            for other in paths[index + 1 :]:
                if other == path or path in other.parents or other in path.parents:
                    raise ValueError(
                        f"persistent paths {path.as_posix()!r} and {other.as_posix()!r} overlap: "
                        "list each once, and none inside another"
                    )
        return self

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        for name in value:
            if not PROCESS_NAME_RE.match(str(name)) or name in RESERVED_PROCESSES:
                raise ValueError(
                    f"process name {name!r} must be lowercase letters, digits and '_' "
                    f"and not one of {sorted(RESERVED_PROCESSES)}"
                )
        # a bare command string is the short form of { command = "..." }
        return {k: {"command": v} if isinstance(v, str) else v for k, v in value.items()}

    @model_validator(mode="after")
    def _system_nginx_needs_domains(self) -> Spec:
        for name, target in self.targets.items():
            if target.nginx == "system" and not self.domains:
                raise ValueError(
                    f"target {name!r} uses the system nginx, which routes to apps by name: "
                    "set `domains`, e.g. domains = ['app.example.com']"
                )
        return self

    @model_validator(mode="after")
    def _kubernetes_tls_needs_domains(self) -> Spec:
        if self.kubernetes.tls_secret_name(self.name) and not self.domains:
            raise ValueError(
                "kubernetes.tls_secret or kubernetes.cluster_issuer is set, and a certificate "
                "names its hosts: set `domains`, e.g. domains = ['app.example.com']"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _kind_and_server(cls, data: Any) -> Any:
        """Fill in what one of `kind` and `server.type` implies for the other: an ASGI app
        with no server named gets the default ASGI server; a spec naming an ASGI server
        and no kind (written when the only ASGI server was `uvicorn`) is an ASGI app."""
        if not isinstance(data, dict):
            return data
        server = data.get("server")
        server_type = server.get("type") if isinstance(server, dict) else None
        if data.get("kind") == "asgi" and server_type is None and isinstance(server, dict | None):
            return {**data, "server": {**(server or {}), "type": DEFAULT_ASGI_SERVER.value}}
        if "kind" not in data and server_type in ASGI_SERVERS:
            return {**data, "kind": "asgi"}
        return data

    @model_validator(mode="after")
    def _media_apart(self) -> Spec:
        if self.django is not None and self.django.media_url.rstrip("/") in {
            p.rstrip("/") for p in self.static
        }:
            raise ValueError(
                f"django.media_url {self.django.media_url!r} is also a [static] prefix: "
                "give the uploads a URL of their own"
            )
        return self

    @model_validator(mode="after")
    def _server_runs_kind(self) -> Spec:
        serves = self.server.type.serves
        if self.kind is AppKind.ASGI and serves == "wsgi":
            raise ValueError(
                f"server.type = '{self.server.type}' runs WSGI apps, and kind = 'asgi': use an "
                f"ASGI server ({', '.join(ASGI_SERVERS)}), or drop server.type to get "
                f"'{DEFAULT_ASGI_SERVER}'; if the app is a WSGI app, set kind = 'wsgi'"
            )
        if self.kind is AppKind.WSGI and serves == "asgi":
            raise ValueError(
                f"server.type = '{self.server.type}' runs ASGI apps only, and kind = 'wsgi': "
                f"use {' or '.join(WSGI_SERVERS)} for a WSGI app, or set kind = 'asgi' if "
                f"{self.entry} is an ASGI app"
            )
        return self

    @model_validator(mode="after")
    def _tls_needs_domains(self) -> Spec:
        uses = [("tls", self.tls)] + [
            (f"targets.{name}.tls", target.tls) for name, target in self.targets.items()
        ]
        for where, tls in uses:
            if tls is None:
                continue
            if not self.domains:
                raise ValueError(
                    f"{where} needs `domains`: the names the certificate is for, e.g. "
                    "domains = ['app.example.com']"
                )
            if tls.mode == "acme" and (wild := [d for d in self.domains if "*" in d]):
                raise ValueError(
                    f"{where}: ACME's HTTP-01 challenge cannot prove a wildcard name "
                    f"({', '.join(wild)}): list each name, or use mode = 'files'"
                )
        for name, target in self.targets.items():
            tls = self.tls_for(name)
            if target.type == "ssh" and not target.lb and tls and tls.mode == "acme":
                raise ValueError(
                    f"target {name!r} has tls.mode = 'acme' and no `lb`: on an ssh target the "
                    "certificate is obtained and renewed on the lb (one host must answer every "
                    "challenge); add lb = 'host', or use mode = 'files'"
                )
        return self

    def tls_for(self, target: str) -> TlsSpec | None:
        """The HTTPS settings of `target`: its own `tls`, else the top-level one."""
        own = self.targets[target].tls if target in self.targets else None
        return own or self.tls

    @property
    def module(self) -> str:
        """The importable module of the entry point."""
        return self.entry.split(":", 1)[0]

    @property
    def top_package(self) -> str:
        return self.module.split(".", 1)[0]

    def target(self, name: str) -> TargetSpec:
        if name in self.targets:
            return self.targets[name]
        if name == "local":
            return TargetSpec()
        known = ", ".join(sorted({"local", *self.targets})) or "local"
        raise SpecError(f"no target named {name!r} in the spec; known targets: {known}.")


def check_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("must be 'host:port' with a port from 1 to 65535, e.g. '127.0.0.1:8080'")
    return value


def check_env_pair(key: str, value: str) -> None:
    """Reject names a shell can't export and values that would corrupt the env file."""
    if not ENV_KEY_RE.match(key):
        raise ValueError(
            f"variable name {key!r} must be letters, digits and '_', not starting with a digit"
        )
    if key in RESERVED_ENV:
        raise ValueError(f"variable {key!r} is set by shipyard itself and cannot be overridden")
    if "\x00" in value:
        raise ValueError(f"value of {key} contains a NUL byte")


def _check_command(value: str) -> str:
    if "\x00" in value:
        raise ValueError("holds a NUL character")
    if bad := re.search(r"[\x01-\x08\x0a-\x1f\x7f]", value):
        # supervisor's and the env's files are line-based: a line break would start a new
        # entry there; `&&` or a script in the project does what several lines would
        raise ValueError(
            f"holds the control character {bad.group()!r}: a command is one line (join steps "
            "with '&&', or put them in a script in the project)"
        )
    try:
        parts = shlex.split(value)
    except ValueError as err:
        raise ValueError(f"cannot be split into arguments ({err})") from None
    if not parts:
        raise ValueError("must not be empty")
    return value


# A host name per RFC 1123 (labels of letters, digits and inner hyphens), or a wildcard's
# first label: nginx's server_name takes nothing else from us, so nothing can end its line.
DOMAIN_RE = re.compile(
    r"^(\*\.)?(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
)
# Characters that nginx or supervisord read as syntax (or interpolation), and any control
# character: a path holding one would change the rendered files' meaning.
CONFIG_SYNTAX = re.compile(r"[\x00-\x20\x7f;{}\"'\\$#%`]")


def check_domain(domain: str) -> str:
    if len(domain) > 253 or not DOMAIN_RE.match(domain):
        raise ValueError(
            f"domain {domain!r} is not a host name (letters, digits, hyphens and dots, "
            "optionally starting with '*.' as a wildcard)"
        )
    return domain


def check_config_path(path: str, what: str) -> str:
    if (bad := CONFIG_SYNTAX.search(path)) is not None:
        raise ValueError(
            f"{what} {path!r} holds {bad.group()!r}: a path written into nginx and supervisor "
            "configs may not hold spaces, control characters or any of ; { } \" ' \\ $ # % `"
        )
    return path


def _check_relative(directory: str) -> None:
    if "\x00" in directory or any(ord(c) < 32 for c in directory):
        raise ValueError(f"directory {directory!r} holds a control character")
    path = Path(directory)
    if path.is_absolute() or ".." in path.parts or not directory.strip():
        raise ValueError(f"directory {directory!r} must be a relative path inside the project")


def parse_spec(raw: dict[str, Any], path: Path) -> Spec:
    try:
        return Spec.model_validate(raw)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, path, raw)) from None


def format_validation_error(err: ValidationError, path: Path, raw: dict[str, Any]) -> str:
    """One line per problem: file, dotted key, the value given, and what is allowed."""
    prefix = "tool.shipyard." if path.name == "pyproject.toml" else ""
    lines = [f"{path} is not a valid shipyard spec:"]
    for problem in err.errors():
        key = (
            prefix + _dotted(problem["loc"])
            if problem["loc"]
            else prefix.rstrip(".") or "(top level)"
        )
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see docs/spec.md for every key)"
        elif problem["type"] == "missing":
            message = "required key is missing"
        given = _lookup(raw, problem["loc"])
        shown = (
            f" (got {given!r})"
            if given is not _MISSING and problem["type"] != "extra_forbidden"
            else ""
        )
        lines.append(f"  {key}: {message}{shown}")
    return "\n".join(lines)


_MISSING = object()


def _dotted(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _lookup(raw: Any, loc: tuple[int | str, ...]) -> Any:
    node = raw
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return node
