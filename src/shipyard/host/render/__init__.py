"""Render every file shipyard writes on a host: nginx, supervisor, app server configs, env files."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePath

import jinja2

from shipyard.host import programs
from shipyard.host.layout import HOLD_SUFFIX, AppLayout, HostLayout
from shipyard.spec.model import ServerType, Spec

_TEMPLATES = jinja2.PackageLoader("shipyard.host.render", "templates")
_ENV = jinja2.Environment(
    loader=_TEMPLATES,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # configs, not HTML
)


def compile_templates() -> None:
    """Compile every template now (a process that forks per command does it once for all)."""
    for name in _TEMPLATES.list_templates():
        if name.endswith(".j2"):
            _ENV.get_template(name)


def _render(template: str, **context: object) -> str:
    return _ENV.get_template(template).render(**context)


def launcher_script() -> bytes:
    return _TEMPLATES.get_source(_ENV, "launcher.sh")[0].encode()  # as it is, not rendered


def nginx_start_script() -> bytes:
    """The Python script nginx starts through, to take over sockets shipyard hands over."""
    return _TEMPLATES.get_source(_ENV, "nginx-start")[0].encode()


# How long nginx's old workers may keep connections after a reload: past the longest an
# app's old release can keep them (server.websocket_drain, then server.graceful_timeout, at
# most 3600 s each), so that the app's own close (WebSocket code 1012) always comes first.
OLD_WORKERS_LIFETIME = 2 * 3600 + 60
# nginx retries a bind() that fails for about 2.5 s before it exits: one that lives past
# this is up, and one that crash-loops is never shown RUNNING.
NGINX_STARTSECS = 3

# Seconds app servers keep an idle connection from nginx: longer than nginx keeps it in its
# upstream pool (its `keepalive_timeout` there), so nginx is always the one to close it and
# never sends a request on a connection the server is closing.
SERVER_KEEPALIVE = 75
UPSTREAM_KEEPALIVE_TIMEOUT = 60
# Idle connections to the app server each nginx worker keeps. A pool smaller than the
# requests one worker has in flight closes the surplus after each answer and connects
# anew for the next: under load that is a connect and an accept, in Python, per request.
UPSTREAM_KEEPALIVE = 64


@dataclass(frozen=True)
class NginxBinary:
    """Where the nginx binary is and what ships beside it."""

    path: str
    mime_types: str | None
    uwsgi_params: str | None


def nginx_main_conf(host: HostLayout, nginx: NginxBinary, run_as: str | None) -> str:
    return _render(
        "nginx.conf.j2",
        base=host.base,
        run_as=run_as,
        worker_processes=min(os.cpu_count() or 1, 4),
        pidfile=host.nginx_pidfile,
        worker_shutdown_timeout=OLD_WORKERS_LIFETIME,
        error_log=host.nginx_error_log,
        mime_types=nginx.mime_types,
        temp=host.nginx_dir / "tmp",
        sites=host.nginx_sites,
    )


def nginx_command(host: HostLayout, nginx: NginxBinary) -> tuple[str, ...]:
    """nginx with its prefix, config and early error log all under the base (no root needed)."""
    return (
        nginx.path,
        "-p",
        f"{host.nginx_dir}/",
        "-c",
        str(host.nginx_conf),
        "-e",
        str(host.nginx_error_log),
    )


# Mozilla's "intermediate" TLS 1.2 suites (TLS 1.3's are OpenSSL's defaults), its DHE ones
# left out: they need a dhparam file, and every client that speaks TLS 1.2 has ECDHE.
INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


@dataclass(frozen=True)
class TlsSite:
    """How a server block serves HTTPS (host/tls.py decides it from the spec and the host)."""

    listen: str
    certificate: Path | None  # None: an ACME certificate not obtained yet (plain HTTP only)
    key: Path | None
    redirect: bool = True
    hsts_max_age: int = 0
    stapling: bool = False  # the certificate names an OCSP responder
    webroot: Path | None = None  # where ACME's HTTP-01 answers are written
    session_cache: str = "shipyard_tls"
    ciphers: str = INTERMEDIATE_CIPHERS

    @property
    def ready(self) -> bool:
        return self.certificate is not None and self.key is not None

    @property
    def redirect_now(self) -> bool:
        """Plain HTTP is redirected only once HTTPS is served."""
        return self.redirect and self.ready

    @property
    def port_suffix(self) -> str:
        """':port' in a redirect's URL, unless it is HTTPS's own 443."""
        port = self.listen.rpartition(":")[2]
        return "" if port == "443" else f":{port}"


def site_conf(
    spec: Spec,
    app: AppLayout,
    release_id: str,
    slot: str,
    static_dirs: dict[str, Path],
    listen: str,
    nginx: NginxBinary,
    tls: TlsSite | None = None,
    proto_from_lb: bool = False,
) -> str:
    """The app's server block, pointing at the socket of `slot`; with `tls`, an HTTPS one
    beside it; `proto_from_lb`: HTTPS ends on the fleet's lb, whose X-Forwarded-Proto the
    app gets."""
    static = _static_locations(static_dirs, uploads=app.media)
    is_uwsgi = spec.server.type is ServerType.UWSGI
    return _render(
        "site.conf.j2",
        app=spec.name,
        upstream=spec.name.replace("-", "_"),
        release=release_id,
        slot=slot,
        socket=app.socket(slot),
        listen=listen,
        server_names=" ".join(spec.domains) or '""',
        access_log=app.access_log,
        error_log=app.error_log,
        max_body="10m",
        static=static,
        read_timeout=spec.server.timeout + 5,
        websocket_timeout=spec.server.websocket_timeout,
        uwsgi=is_uwsgi,
        uwsgi_params=nginx.uwsgi_params or "uwsgi_params",
        upstream_keepalive=UPSTREAM_KEEPALIVE,
        upstream_keepalive_timeout=UPSTREAM_KEEPALIVE_TIMEOUT,
        log_format="combined" if app.host.system_nginx else "shipyard",
        tls=tls,
        proto_from_lb=proto_from_lb,
        proto=f"$shipyard_{spec.name.replace('-', '_')}_proto" if proto_from_lb else "$scheme",
    )


def lb_conf(
    spec: Spec,
    release_id: str,
    backends: list[tuple[str, bool]],
    static_dirs: dict[str, Path],
    listen: str,
    access_log: Path,
    error_log: Path,
    log_format: str = "shipyard",
    tls: TlsSite | None = None,
) -> str:
    """A load balancer's server block: an upstream of web hosts, (address, drained) each;
    with `tls`, HTTPS ends here."""
    static = _static_locations(static_dirs)
    return _render(
        "lb.conf.j2",
        app=spec.name,
        upstream=spec.name.replace("-", "_"),
        release=release_id,
        backends=backends,
        listen=listen,
        server_names=" ".join(spec.domains) or '""',
        access_log=access_log,
        error_log=error_log,
        max_body="10m",
        static=static,
        read_timeout=spec.server.timeout + 5,
        websocket_timeout=spec.server.websocket_timeout,
        log_format=log_format,
        tls=tls,
    )


def _location(prefix: str) -> str:
    return prefix if prefix.endswith("/") else prefix + "/"


# A file name with a content hash before its extension, as Django's
# ManifestStaticFilesStorage writes them (name.<12 hex digits>.ext): its content never
# changes, so it is cached for a year.
HASHED_NAME = r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$"


@dataclass(frozen=True)
class StaticLocation:
    prefix: str  # ends with '/'
    directory: str  # ends with '/'
    uploads: bool = False  # what the app's users uploaded: never a page of the site's own

    @property
    def hashed(self) -> str:
        """A regex for the URIs whose names carry a content hash (never in uploads)."""
        return "" if self.uploads else HASHED_NAME

    @property
    def never_served(self) -> str:
        """A regex for the URIs under `prefix` nginx answers 404 to, though a file may be
        there: a path segment that starts with '.' (.env, .git/, .htpasswd, vim's .x.swp),
        or an editor backup, swap file or merge leftover (x~, #x#, x.swp, x.swo, x.bak,
        x.orig); the build leaves the same names out of a release (build/static.py)."""
        end = "(?:/|$)"
        return (
            f"^{re.escape(self.prefix)}(?:.*/)?(?:\\.|#[^/]*#{end})"
            f"|~{end}|\\.(?:swp|swo|bak|orig){end}"
        )


def _static_locations(
    static_dirs: dict[str, Path], uploads: Path | None = None
) -> list[StaticLocation]:
    """The longest prefix first; `uploads`: the directory of the users' uploads."""
    return sorted(
        (StaticLocation(_location(p), f"{d}/", d == uploads) for p, d in static_dirs.items()),
        key=lambda loc: -len(loc.prefix),
    )


def supervisord_conf(
    host: HostLayout, nginx: NginxBinary, user: str | None, python: str = "python3"
) -> str:
    """supervisord's config; it runs shipyard's nginx too unless the host's own is used.
    `python`: the interpreter of nginx's start script (nginx_start_script)."""
    start = (python, "-I", "-S", str(host.nginx_start), str(host.nginx_handover))
    return _render(
        "supervisord.conf.j2",
        base=host.base,
        socket=host.supervisor_socket,
        logs=host.logs,
        pidfile=host.supervisor_pidfile,
        programs=host.programs,
        user=user,
        nginx_command=""
        if host.system_nginx
        else shlex.join((*start, *nginx_command(host, nginx))),
        nginx_startsecs=NGINX_STARTSECS,
    )


@dataclass(frozen=True)
class ProcessConf:
    name: str
    command: str
    log: Path
    stopsignal: str
    startsecs: int = 1


def program_conf(
    spec: Spec,
    app: AppLayout,
    release_id: str,
    slot: str,
    launcher: Path,
    user: str | None = None,
    tree: bool = False,
    workers: int | None = None,
) -> str:
    """Supervisor programs of one slot: the web server plus any extra processes, each run
    in the release's working directory (a source tree's release: its tree)."""
    workdir = app.workdir(release_id, tree)
    venv = app.venv(release_id)
    env_file = app.env_file(slot)
    prefix = (str(launcher), str(env_file), str(workdir))
    processes = [
        ProcessConf(
            name=app.program("web", slot),
            command=_supervisor_command(
                (*prefix, *server_argv(spec, app, release_id, slot, workers))
            ),
            log=app.app_log("web", slot),
            stopsignal=stop_signal(spec),
        )
    ]
    for instance in programs.workers(spec):
        process = spec.processes[instance.kind]
        processes.append(
            ProcessConf(
                name=app.program(instance.name, slot),
                command=_supervisor_command((*prefix, *shlex.split(process.command))),
                log=app.app_log(instance.name, slot),
                stopsignal="TERM",
                startsecs=process.startsecs,
            )
        )
    environment = {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(app.shared) if user else os.environ.get("HOME", str(app.root)),
    }
    return _render(
        "program.conf.j2",
        app=spec.name,
        release=release_id,
        slot=slot,
        processes=processes,
        directory=workdir,
        environment=",".join(f'{k}="{_supervisor_escape(v)}"' for k, v in environment.items()),
        stopwaitsecs=spec.server.graceful_timeout + 5,
        user=user,
    )


def stop_signal(spec: Spec) -> str:
    """The signal that stops the app server gracefully: uWSGI's is INT (TERM reloads it);
    every other server's is TERM."""
    return "INT" if spec.server.type is ServerType.UWSGI else "TERM"


@dataclass(frozen=True)
class UnixSocket:
    """Where a host's app server listens: nginx reaches it there."""

    path: Path


@dataclass(frozen=True)
class TcpAddress:
    """Where a container's app server listens: the container's port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


Bind = UnixSocket | TcpAddress


def server_argv(
    spec: Spec, app: AppLayout, release_id: str, slot: str, workers: int | None = None
) -> tuple[str, ...]:
    """The app server's command on a host, on the slot's socket; `workers` (set by
    `shipyard scale web=N`) overrides the count its config file in the release was written
    with."""
    bind = UnixSocket(app.socket(slot))
    return server_command(spec, app.venv(release_id), app.release(release_id), bind, workers)


def server_command(
    spec: Spec, venv: PurePath, release_dir: PurePath, bind: Bind, workers: int | None = None
) -> tuple[str, ...]:
    """The app server's command, its config files in `release_dir` (server_files), bound to
    `bind`. On a unix socket, uvicorn and granian start through their launcher, which binds
    it; on TCP they bind it themselves."""
    server = spec.server.type
    if server is ServerType.UWSGI:
        scale = ("--processes", str(workers)) if workers else ()
        where = (
            ("--socket", str(bind.path))
            if isinstance(bind, UnixSocket)
            else ("--http-socket", str(bind))  # no nginx in front to speak uwsgi's protocol
        )
        return (f"{venv}/bin/uwsgi", "--ini", f"{release_dir}/uwsgi.ini", *scale, *where)
    if not server.on_gunicorn:  # uvicorn, granian
        if isinstance(bind, TcpAddress):
            count = workers or spec.server.workers or default_workers()
            return (
                *asgi_server_argv(spec, venv),
                *("--workers", str(count), "--host", bind.host, "--port", str(bind.port)),
            )
        return (
            f"{venv}/bin/python",
            f"{release_dir}/{SERVER_LAUNCHER}",
            str(bind.path),
            *((str(workers),) if workers else ()),
        )
    return (
        f"{venv}/bin/gunicorn",
        "--config",
        f"{release_dir}/gunicorn.conf.py",
        *(("--workers", str(workers)) if workers else ()),
        "--bind",
        f"unix:{bind.path}" if isinstance(bind, UnixSocket) else str(bind),
        AIOHTTP_ENTRY if server is ServerType.AIOHTTP else spec.entry,
    )


def _supervisor_command(argv: tuple[str, ...]) -> str:
    # supervisor splits with shlex and expands %(...)s, so '%' must be doubled; its config
    # parser ends a line at whitespace then ';' or '#', even inside quotes: the quote is
    # closed and reopened between them ('a '';b' is the same word to shlex)
    words = (re.sub(r"(\s)([;#])", r"\1''\2", shlex.quote(word)) for word in argv)
    return " ".join(words).replace("%", "%%")


def _supervisor_escape(value: str) -> str:
    return value.replace("%", "%%").replace('"', '\\"')


def default_workers() -> int:
    return min(2 * (os.cpu_count() or 1) + 1, 8)


# What the release holds for servers that read no config file of their own: a launcher
# with their settings (the socket, and a `scale` count, come on its command line).
SERVER_LAUNCHER = "shipyard_server.py"
# The module gunicorn loads for an aiohttp app: the entry as aiohttp's worker takes it.
AIOHTTP_SHIM = "shipyard_aiohttp.py"
AIOHTTP_ENTRY = "shipyard_aiohttp:app"


def server_conf_files(
    spec: Spec, app: AppLayout, release_id: str, socket_mode: int = 0o660
) -> dict[str, str]:
    """The app server's own config files, written into the release directory; its socket
    gets `socket_mode` (nginx's workers reach it as its owner or through its group)."""
    release_dir, venv = app.release(release_id), app.venv(release_id)
    return server_files(spec, release_id, release_dir, venv, socket_mode)


def server_files(
    spec: Spec,
    release_id: str,
    release_dir: Path,
    venv: Path,
    socket_mode: int = 0o660,
    workers: int | None = None,
) -> dict[str, str]:
    """The app server's config files for a release in `release_dir` with its venv at
    `venv`; `workers`: the count when the spec sets none (default: default_workers())."""
    workers = spec.server.workers or workers or default_workers()
    server = spec.server.type
    module, attribute = spec.entry.split(":", 1)
    factory = attribute.endswith("()")
    if server is ServerType.UWSGI:
        return {
            "shipyard_wsgi.py": _render(
                "wsgi_shim.py.j2",
                entry=spec.entry,
                module=module,
                attribute=attribute.removesuffix("()"),
                factory=factory,
            ),
            "uwsgi.ini": _render(
                "uwsgi.ini.j2",
                release=release_id,
                workers=workers,
                threads=spec.server.threads,
                shim=release_dir / "shipyard_wsgi.py",
                venv=venv,
                timeout=spec.server.timeout,
                socket_mode=f"{socket_mode:o}",
            ),
        }
    if not server.on_gunicorn:
        return {
            SERVER_LAUNCHER: _render(
                "server_launcher.py.j2",
                server=server.value,
                release=release_id,
                workers=workers,
                socket_mode=f"0o{socket_mode:03o}",
                pass_socket="fd" if server is ServerType.UVICORN else "path",
                argv=asgi_server_argv(spec, venv),
            )
        }
    files = {
        "gunicorn.conf.py": _render(
            "gunicorn.conf.py.j2",
            release=release_id,
            workers=workers,
            threads=spec.server.threads,
            worker_class=_GUNICORN_WORKERS.get(server)
            or ("gthread" if spec.server.threads > 1 else ""),
            timeout=spec.server.timeout,
            graceful_timeout=spec.server.graceful_timeout,
            keepalive=SERVER_KEEPALIVE,
            umask=f"0o{0o777 & ~socket_mode:03o}",
            pythonpath=str(release_dir) if server is ServerType.AIOHTTP else "",
            hold_suffix=HOLD_SUFFIX,
        )
    }
    if server is ServerType.AIOHTTP:
        files[AIOHTTP_SHIM] = _render(
            "aiohttp_shim.py.j2",
            entry=spec.entry,
            module=module,
            attribute=attribute.removesuffix("()"),
            factory=factory,
        )
    return files


_GUNICORN_WORKERS = {
    ServerType.GUNICORN_UVICORN: "uvicorn_worker.UvicornWorker",
    ServerType.GUNICORN_ASGI: "asgi",
    ServerType.AIOHTTP: "aiohttp.GunicornWebWorker",
}


def asgi_server_argv(spec: Spec, venv: PurePath) -> list[str]:
    """The command of an ASGI server run by its own process manager, but its socket and
    worker count (its launcher adds those)."""
    module, attribute = spec.entry.split(":", 1)
    target = f"{module}:{attribute.removesuffix('()')}"
    factory = ["--factory"] if attribute.endswith("()") else []
    graceful = str(spec.server.graceful_timeout)
    if spec.server.type is ServerType.GRANIAN:
        return [
            f"{venv}/bin/granian",
            "--interface",
            "asgi",
            *factory,
            # a worker gets this long to finish its requests once told to stop
            "--workers-kill-timeout",
            graceful,
            "--respawn-failed-workers",
            "--no-access-log",
            target,
        ]
    return [
        f"{venv}/bin/uvicorn",
        target,
        *factory,
        # nginx is the only client: it sets X-Forwarded-For/-Proto, and the socket has no
        # address of its own for uvicorn to trust
        "--proxy-headers",
        "--forwarded-allow-ips",
        "*",
        "--timeout-graceful-shutdown",
        graceful,
        "--timeout-keep-alive",
        str(SERVER_KEEPALIVE),
        "--no-access-log",  # nginx keeps the access log
    ]


def server_packages(spec: Spec) -> list[str]:
    """Packages the chosen app server needs in the release venv."""
    version = spec.server.version
    server = spec.server.type
    if server is ServerType.UWSGI:
        return [f"uwsgi{version}"]
    if server is ServerType.UVICORN:
        # plain uvicorn has no WebSocket library (it would refuse every handshake); httptools
        # and uvloop are its fast HTTP parser and event loop, used when present
        return [f"uvicorn{version}", "websockets", "httptools", "uvloop"]
    if server is ServerType.GRANIAN:
        return [f"granian{version}", "uvloop"]
    floor = _GUNICORN_FLOOR.get(server, "")
    packages = [
        f"gunicorn{version},{floor}" if version and floor else f"gunicorn{version or floor}"
    ]
    if server is ServerType.GUNICORN_UVICORN:
        packages += ["uvicorn-worker", "websockets", "httptools", "uvloop"]
    elif server is ServerType.GUNICORN_ASGI:
        packages += ["uvloop"]  # its worker's event loop when present
    elif server is ServerType.AIOHTTP:
        packages += ["aiohttp"]
    return packages


# The first gunicorn with the worker a server type needs.
_GUNICORN_FLOOR = {ServerType.GUNICORN_ASGI: ">=27"}


def env_file(variables: dict[str, str]) -> bytes:
    """KEY='value' lines, quoted so `sh` reads every value back byte for byte."""
    lines = ["# Managed by shipyard: the app's environment. Mode 0600: it holds secrets."]
    lines += [f"{key}={shlex.quote(value)}" for key, value in sorted(variables.items())]
    return ("\n".join(lines) + "\n").encode()


def django_settings_module(settings: str) -> str:
    """The settings module of a Django release (host/djangoapp.py): `settings`, the
    project's, with the deploy's DJANGO_* variables over it."""
    return _render("shipyard_django_settings.py.j2", settings=settings)
