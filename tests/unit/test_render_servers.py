"""The app servers shipyard runs: which one a spec gets, which combinations it refuses, and
what is rendered for each (command, config files, packages, nginx's upstream pool)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shipyard.errors import SpecError
from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.spec.model import DEFAULT_ASGI_SERVER, ServerType, Spec, parse_spec

NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")
HOST = HostLayout(Path("/srv/sy"))
APP = HOST.app("a")
VENV = "/srv/sy/a/releases/r1/venv"


def _spec(entry: str = "m:app", **raw: object) -> Spec:
    return Spec.model_validate({"name": "a", "entry": entry, **raw})


def _invalid(raw: dict[str, object]) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "a", "entry": "m:app", **raw}, Path("shipyard.toml"))
    return str(err.value)


def test_an_asgi_app_without_a_server_gets_the_default_asgi_server() -> None:
    assert _spec(kind="asgi").server.type is DEFAULT_ASGI_SERVER
    assert _spec(kind="asgi", server={"workers": 2}).server.type is DEFAULT_ASGI_SERVER
    assert _spec().server.type is ServerType.GUNICORN


def test_a_spec_naming_an_asgi_server_and_no_kind_is_an_asgi_app() -> None:
    """Specs written when `uvicorn` was the only ASGI server often left `kind` out."""
    for server in ("uvicorn", "gunicorn-uvicorn", "gunicorn-asgi", "granian"):
        assert _spec(server={"type": server}).kind == "asgi"


def test_a_wsgi_app_on_an_asgi_only_server_is_refused_with_the_fix() -> None:
    message = _invalid({"kind": "wsgi", "server": {"type": "granian"}})
    assert "server.type = 'granian' runs ASGI apps only, and kind = 'wsgi'" in message
    assert "use gunicorn or uwsgi for a WSGI app, or set kind = 'asgi'" in message


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_an_asgi_app_on_a_wsgi_server_is_refused_with_the_fix(server: str) -> None:
    message = _invalid({"kind": "asgi", "server": {"type": server}})
    assert f"server.type = '{server}' runs WSGI apps, and kind = 'asgi'" in message
    assert "uvicorn, gunicorn-uvicorn, gunicorn-asgi, granian" in message
    assert "Traceback" not in message


def test_an_unknown_server_type_lists_the_known_ones() -> None:
    message = _invalid({"server": {"type": "daphne"}})
    assert "server.type" in message and "'gunicorn-asgi'" in message and "'aiohttp'" in message


def test_aiohttp_reads_no_kind() -> None:
    for kind in ("wsgi", "asgi"):
        assert _spec(kind=kind, server={"type": "aiohttp"}).server.type is ServerType.AIOHTTP


def test_uvicorn_runs_its_own_process_manager_from_a_launcher_in_the_release() -> None:
    spec = _spec("m:create()", kind="asgi", server={"type": "uvicorn", "graceful_timeout": 7})
    argv = render.server_argv(spec, APP, "r1", "blue")
    assert argv == (
        f"{VENV}/bin/python",
        "/srv/sy/a/releases/r1/shipyard_server.py",
        str(APP.socket("blue")),
    )
    assert render.server_argv(spec, APP, "r1", "blue", workers=3)[-1] == "3"  # `scale web=3`
    launcher = render.server_conf_files(spec, APP, "r1", 0o600)["shipyard_server.py"]
    assert (
        f'ARGV = ["{VENV}/bin/uvicorn", "m:create", "--factory", "--proxy-headers", '
        '"--forwarded-allow-ips", "*", "--timeout-graceful-shutdown", "7", '
        '"--timeout-keep-alive", "75", "--no-access-log"]'
    ) in launcher
    assert f"\nWORKERS = {render.default_workers()}\n" in launcher
    compile(launcher, "shipyard_server.py", "exec")
    assert render.server_packages(spec) == ["uvicorn", "websockets", "httptools", "uvloop"]


def test_granian_binds_its_socket_with_the_mode_it_is_given() -> None:
    spec = _spec(kind="asgi", server={"type": "granian", "workers": 2, "version": "==2.8.9"})
    launcher = render.server_conf_files(spec, APP, "r1", 0o660)["shipyard_server.py"]
    assert (
        f'ARGV = ["{VENV}/bin/granian", "--interface", "asgi", "--workers-kill-timeout", "20", '
        '"--respawn-failed-workers", "--no-access-log", "m:app"]'
    ) in launcher
    assert "SOCKET_MODE = 0o660" in launcher and "\nWORKERS = 2\n" in launcher
    assert '"--uds-permissions", f"0{SOCKET_MODE:o}"' in launcher  # granian reads 0-led octal
    assert render.server_packages(spec) == ["granian==2.8.9", "uvloop"]


def _run_launcher(tmp_path: Path, mode: int) -> tuple[str, list[str]]:
    """The uvicorn launcher as rendered, its server replaced by a Python program that says
    what it was handed: the mode of the socket behind `--fd`, and its arguments."""
    report = textwrap.dedent(
        """
        import os, socket, stat, sys
        fd = int(sys.argv[sys.argv.index("--fd") + 1])
        sock = socket.socket(fileno=fd)
        print(oct(stat.S_IMODE(os.stat(sock.getsockname()).st_mode)), *sys.argv[1:])
        """
    )
    text = render._render(
        "server_launcher.py.j2",
        server="uvicorn",
        release="r1",
        workers=5,
        socket_mode=f"0o{mode:03o}",
        pass_socket="fd",
        argv=[sys.executable, "-c", report],
    )
    (tmp_path / "launcher.py").write_text(text)
    sock = tmp_path / "s.sock"
    sock.write_text("left by a dead server")
    out = subprocess.run(
        [sys.executable, str(tmp_path / "launcher.py"), str(sock), "3"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.split()
    return out[0], out[1:]


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_the_uvicorn_launcher_hands_over_a_socket_of_the_mode_it_was_given(
    tmp_path: Path, mode: int
) -> None:
    got, args = _run_launcher(tmp_path, mode)
    assert got == oct(mode)  # not uvicorn's 0666
    assert args[:2] == ["--workers", "3"] and args[2] == "--fd"
    assert stat.S_ISSOCK((tmp_path / "s.sock").stat().st_mode)


@pytest.mark.parametrize(
    ("server", "worker", "packages"),
    [
        ("gunicorn-uvicorn", "uvicorn_worker.UvicornWorker", ["gunicorn", "uvicorn-worker"]),
        ("gunicorn-asgi", "asgi", ["gunicorn>=27", "uvloop"]),
        ("aiohttp", "aiohttp.GunicornWebWorker", ["gunicorn", "aiohttp"]),
    ],
)
def test_gunicorn_based_servers_name_their_worker(
    server: str, worker: str, packages: list[str]
) -> None:
    spec = _spec(server={"type": server, "threads": 4})
    conf = render.server_conf_files(spec, APP, "r1")["gunicorn.conf.py"]
    assert f'worker_class = "{worker}"' in conf  # never gthread, whatever `threads` says
    assert "\nkeepalive = 75\n" in conf
    compile(conf, "gunicorn.conf.py", "exec")
    assert render.server_packages(spec)[: len(packages)] == packages
    argv = render.server_argv(spec, APP, "r1", "green")
    assert argv[:3] == (
        f"{VENV}/bin/gunicorn",
        "--config",
        "/srv/sy/a/releases/r1/gunicorn.conf.py",
    )
    assert argv[-2] == f"unix:{APP.socket('green')}"


def test_gunicorn_asgi_keeps_its_floor_under_a_version_of_the_user() -> None:
    spec = _spec(kind="asgi", server={"type": "gunicorn-asgi", "version": "<28"})
    assert render.server_packages(spec)[0] == "gunicorn<28,>=27"


def test_an_aiohttp_app_reaches_gunicorn_through_a_shim_that_awaits_or_calls_a_factory(
    tmp_path: Path,
) -> None:
    (tmp_path / "web.py").write_text(
        "class Application: ...\n"
        "app = Application()\n"
        "def build():\n    return Application()\n"
        "async def build_async():\n    return Application()\n"
    )
    got = {}
    for entry in ("web:app", "web:build()", "web:build_async()"):
        spec = _spec(entry, server={"type": "aiohttp"})
        files = render.server_conf_files(spec, APP, "r1")
        assert 'pythonpath = "/srv/sy/a/releases/r1"' in files["gunicorn.conf.py"]
        assert render.server_argv(spec, APP, "r1", "blue")[-1] == "shipyard_aiohttp:app"
        (tmp_path / "shipyard_aiohttp.py").write_text(files["shipyard_aiohttp.py"])
        got[entry] = subprocess.run(
            [sys.executable, "-c", "import shipyard_aiohttp as s; print(type(s.app).__name__)"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
        ).stdout.strip()
    # aiohttp's worker takes an Application, or awaits a coroutine function itself
    assert got == {
        "web:app": "Application",
        "web:build()": "Application",
        "web:build_async()": "function",
    }


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "gunicorn-asgi", "granian", "aiohttp"])
def test_nginx_keeps_idle_connections_to_the_app_server_shorter_than_it_does(server: str) -> None:
    text = render.site_conf(
        _spec(server={"type": server}), APP, "r1", "blue", {}, "127.0.0.1:8080", NGINX
    )
    upstream = text[text.index("upstream shipyard_a {") : text.index("}")]
    assert f"keepalive {render.UPSTREAM_KEEPALIVE};" in upstream
    assert render.UPSTREAM_KEEPALIVE >= 64
    assert f"keepalive_timeout {render.UPSTREAM_KEEPALIVE_TIMEOUT}s;" in upstream
    assert render.UPSTREAM_KEEPALIVE_TIMEOUT < render.SERVER_KEEPALIVE
    plain = text[text.index("location / {") : text.index("location @websocket")]
    assert 'proxy_set_header Connection "";' in plain and "proxy_http_version 1.1;" in plain


def test_every_server_stops_on_term_but_uwsgi_on_int() -> None:
    for server in ServerType:
        kind = "asgi" if server.serves == "asgi" else "wsgi"
        spec = _spec(kind=kind, server={"type": server.value})
        conf = render.program_conf(spec, APP, "r1", "blue", HOST.launcher)
        signal = "INT" if server is ServerType.UWSGI else "TERM"
        assert f"\nstopsignal = {signal}\n" in conf.split("[program:")[1]
        assert "\nstopwaitsecs = 25\n" in conf  # graceful_timeout + 5


def test_every_template_can_be_compiled_ahead_of_its_use() -> None:
    """The warm-start server compiles them once (cli/warm.py), for every command it forks."""
    render.compile_templates()
    assert render._ENV.cache is not None
    compiled = {template.name for template in render._ENV.cache.values()}
    assert {"site.conf.j2", "program.conf.j2", "gunicorn.conf.py.j2"} <= compiled
