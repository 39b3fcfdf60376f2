"""App servers through nginx: requests per second for each server shipyard runs.

Each server is deployed by shipyard with its rendered defaults (the ASGI example's `/` for
the ASGI servers, the Flask example's `/version` for gunicorn and uWSGI) and measured with
`wrk`, in one run, interleaved (rounds of every server and every way in), medians kept:

- through shipyard's nginx (its rendered configs);
- through an nginx configured by hand the way an expert would, to the same server's socket
  (upstream keepalive where the server keeps connections, buffering, workers, buffered
  access log);
- through the same hand-written nginx with shipyard's site config of before this change
  (no upstream keepalive), to show what the rendered keepalive is worth;
- straight to the same server on a TCP port, no nginx at all (the same command, the same
  release, bound to TCP);
- and the example's static files through shipyard's nginx.

Traffic goes to 127.0.0.1 only; every run of wrk is bounded in time.
Usage: PYTHONPATH=src .venv/bin/python bench/servers.py [--quick]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sections

from shipyard.host.layout import HostLayout
from shipyard.host.runtime import find_nginx, stop_runtime
from shipyard.host.state import load_state

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- servers:begin -->", "<!-- servers:end -->"
CACHE = Path(tempfile.gettempdir()) / "shipyard-bench-servers-cache"  # uWSGI compiles once
WRK_THREADS, WRK_CONNECTIONS = 2, 32


@dataclass(frozen=True)
class Server:
    """One server type, on the example it serves."""

    type: str
    example: str
    path: str

    @property
    def app(self) -> str:
        return f"b-{self.type}"


SERVERS = (
    Server("gunicorn", "flask-factory", "/version"),
    Server("uwsgi", "flask-factory", "/version"),
    Server("uvicorn", "asgi-app", "/"),
    Server("gunicorn-uvicorn", "asgi-app", "/"),
    Server("gunicorn-asgi", "asgi-app", "/"),
    Server("granian", "asgi-app", "/"),
    Server("aiohttp", "", "/"),  # the small app below: aiohttp has no example of its own
)
AIOHTTP_APP = """\
from aiohttp import web

GREETING = "hello from aiohttp"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=GREETING)


app = web.Application()
app.add_routes([web.get("/", hello)])
"""
AIOHTTP_SPEC = """\
name = "example"
entry = "app:app"

[server]
workers = 2

[tests]
enabled = false
"""
WAYS = ("shipyard", "expert", "no keepalive", "direct")
STATIC = "/static/style.css"
# Servers that keep a connection open between requests (gunicorn's sync worker and uWSGI's
# uwsgi protocol do not): the expert gives them an upstream keepalive pool.
KEEPS_CONNECTIONS = {"uvicorn", "gunicorn-uvicorn", "gunicorn-asgi", "granian", "aiohttp"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def shipyard(home: Path, *args: str) -> None:
    env = {**os.environ, "SHIPYARD_HOME": str(home), "SHIPYARD_CACHE": str(CACHE)}
    done = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"shipyard {' '.join(args)} failed:\n{done.stderr}")


def deploy(home: Path, work: Path, server: Server, port: int) -> Path:
    project = work / server.app
    if server.example:
        shutil.copytree(
            ROOT / "examples" / server.example,
            project,
            ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", "instance"),
        )
    else:
        project.mkdir()
        (project / "requirements.txt").write_text("aiohttp\n")
        (project / "app.py").write_text(AIOHTTP_APP)
        (project / "shipyard.toml").write_text(AIOHTTP_SPEC)
    spec = project / "shipyard.toml"
    text = re.sub(r"^name = .*$", f'name = "{server.app}"', spec.read_text(), count=1, flags=re.M)
    text = re.sub(r"^type = .*\n", "", text, flags=re.M)
    text = text.replace("[server]\n", f'[server]\ntype = "{server.type}"\n', 1)
    spec.write_text(f'listen = "127.0.0.1:{port}"\n' + text)
    shipyard(home, "deploy", str(project), "--skip-tests")
    return project


def wrk(port: int, path: str, seconds: float) -> float:
    """Requests per second; errors (non-2xx, socket errors) make the run fail."""
    return wrk_url(f"http://127.0.0.1:{port}{path}", seconds)


def wrk_url(url: str, seconds: float, host: str = "") -> float:
    """wrk's rate on any URL (with a Host header when `host` is given); errors (non-2xx,
    socket errors) make the run fail."""
    out = subprocess.run(
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{WRK_CONNECTIONS}",
            f"-d{int(seconds)}s",
            "--timeout",
            "5s",
            *(("-H", f"Host: {host}") if host else ()),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"no rate in wrk's output:\n{out}")
    return float(found.group(1))


def wait_http(port: int, path: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"{what}: nothing answered 200 on :{port}{path}")


# The hand-written nginx: what an expert sets for a proxy in front of one app server.
EXPERT_MAIN = """\
{user}worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{
    worker_connections 4096;
    multi_accept on;
}}
http {{
    default_type application/octet-stream;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    access_log {dir}/access.log combined buffer=64k flush=1s;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 10000;
    server_tokens off;
    include {dir}/sites/*.conf;
}}
"""

EXPERT_HTTP = """\
upstream {name} {{
    server unix:{socket};
{pool}}}
server {{
    listen 127.0.0.1:{port};
    location / {{
        proxy_pass http://{name};
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_buffering on;
        proxy_buffer_size 16k;
        proxy_buffers 16 16k;
    }}
}}
"""
EXPERT_POOL = "    keepalive 64;\n    keepalive_requests 10000;\n    keepalive_timeout 60s;\n"

EXPERT_UWSGI = """\
server {{
    listen 127.0.0.1:{port};
    location / {{
        include {params};
        uwsgi_pass unix:{socket};
        uwsgi_buffering on;
        uwsgi_buffer_size 16k;
        uwsgi_buffers 16 16k;
    }}
}}
"""


def expert_site(server: Server, sock: Path, port: int) -> str:
    if server.type == "uwsgi":
        params = find_nginx().uwsgi_params or "uwsgi_params"
        return EXPERT_UWSGI.format(port=port, socket=sock, params=params)
    pool = EXPERT_POOL if server.type in KEEPS_CONNECTIONS else ""
    return EXPERT_HTTP.format(name=f"x_{port}", socket=sock, port=port, pool=pool)


def without_keepalive(rendered: str, port: int) -> str:
    """shipyard's rendered site as it was before the upstream pool: no keepalive lines."""
    text = "\n".join(
        line for line in rendered.splitlines() if not re.match(r"\s*keepalive(_timeout)? ", line)
    )
    text = re.sub(r"(access_log \S+) shipyard;", r"\1 combined;", text)  # its format is not here
    text = re.sub(r"upstream (\w+)", rf"upstream \1_{port}", text)
    text = re.sub(r"proxy_pass http://(\w+);", rf"proxy_pass http://\1_{port};", text)
    return re.sub(r"listen \S+;", f"listen 127.0.0.1:{port};", text)


def direct_command(home: Path, server: Server, port: int) -> tuple[list[str], str]:
    """The web program's command as supervisord runs it, bound to TCP instead of the
    socket; and the directory it runs in."""
    app = HostLayout(home).app(server.app)
    slot = load_state(app).slot
    assert slot is not None
    conf = app.program_file(slot).read_text()
    program = conf.split(f"[program:{app.program('web', slot)}]", 1)[1]
    command = re.search(r"^command = (.*)$", program, re.M)
    directory = re.search(r"^directory = (.*)$", program, re.M)
    assert command is not None and directory is not None
    argv = shlex.split(command.group(1).replace("%%", "%"))
    bind = f"127.0.0.1:{port}"
    if server.type == "uwsgi":
        at = argv.index("--socket")
        argv[at : at + 2] = ["--http11-socket", bind]  # HTTP/1.1 keepalive, like the rest
    elif "--bind" in argv:
        argv[argv.index("--bind") + 1] = bind
    else:  # the launcher of uvicorn or granian: its settings, bound to TCP
        launcher = Path(argv[-1 if argv[-1].endswith(".py") else -2])
        text = launcher.read_text()
        found = re.search(r"^ARGV = (.*)$", text, re.M)
        workers = re.search(r"^WORKERS = (\d+)$", text, re.M)
        assert found is not None and workers is not None
        at = next(i for i, a in enumerate(argv) if a.endswith("/bin/python"))
        host = ["--host", "127.0.0.1", "--port", str(port), "--workers", workers.group(1)]
        argv[at:] = [*json.loads(found.group(1)), *host]
    return argv, directory.group(1)


@dataclass
class Running:
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        with_group = os.getpgid(self.process.pid)
        os.killpg(with_group, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(with_group, signal.SIGKILL)
            self.process.wait(10)


def start(argv: list[str], cwd: str, log: Path, env: dict[str, str] | None = None) -> Running:
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return Running(process)


def run(quick: bool) -> tuple[dict[tuple[str, str], list[float]], list[float], dict[str, int]]:
    rounds, seconds = (1, 3.0) if quick else (5, 5.0)
    work = Path(tempfile.mkdtemp(prefix="bench-servers-"))
    work.chmod(0o755)  # nginx's workers write their temp files under it
    home = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))  # short: unix socket paths
    expert_dir = work / "nginx"
    for sub in ("sites", "tmp"):
        (expert_dir / sub).mkdir(parents=True)
    running: list[Running] = []
    rates: dict[tuple[str, str], list[float]] = {}
    static: list[float] = []
    ports: dict[str, int] = {}
    try:
        ports = {s.type: free_port() for s in SERVERS}
        expert_ports = {s.type: free_port() for s in SERVERS}
        old_ports = {s.type: free_port() for s in SERVERS}
        direct_ports = {s.type: free_port() for s in SERVERS}
        for server in SERVERS:
            print(f"deploying {server.type} ...", flush=True)
            deploy(home, work, server, ports[server.type])
        layout = HostLayout(home)
        for server in SERVERS:
            app = layout.app(server.app)
            slot = load_state(app).slot
            assert slot is not None
            sock = app.socket(slot)
            sites = expert_dir / "sites"
            (sites / f"{server.app}.conf").write_text(
                expert_site(server, sock, expert_ports[server.type])
            )
            if server.type != "uwsgi":
                rendered = app.site_file.read_text()
                (sites / f"{server.app}-old.conf").write_text(
                    without_keepalive(rendered, old_ports[server.type])
                )
            argv, cwd = direct_command(home, server, direct_ports[server.type])
            venv = app.venv(load_state(app).live or "")
            env = {**os.environ, "PATH": f"{venv}/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}
            running.append(start(argv, cwd, work / f"{server.app}-direct.log", env))
        # nginx's workers run as shipyard's do (as root: the user that may reach the sockets)
        user = re.search(r"^user .*;\n", layout.nginx_conf.read_text(), re.M)
        main_conf = EXPERT_MAIN.format(dir=expert_dir, user=user.group() if user else "")
        (expert_dir / "nginx.conf").write_text(main_conf)
        nginx = find_nginx().path
        running.append(
            start(
                [nginx, "-p", f"{expert_dir}/", "-c", str(expert_dir / "nginx.conf")],
                str(expert_dir),
                work / "nginx.log",
            )
        )
        for server in SERVERS:
            for way, way_ports in zip(
                WAYS, (ports, expert_ports, old_ports, direct_ports), strict=True
            ):
                if not (way == "no keepalive" and server.type == "uwsgi"):
                    wait_http(way_ports[server.type], server.path, f"{server.type}, {way}")
        for index in range(rounds):
            # each round takes the servers and the ways in to them in another order
            order = SERVERS[index % len(SERVERS) :] + SERVERS[: index % len(SERVERS)]
            for server in order:
                ways = WAYS[index % len(WAYS) :] + WAYS[: index % len(WAYS)]
                for way in ways:
                    if way == "no keepalive" and server.type == "uwsgi":
                        continue
                    port_of = {
                        "shipyard": ports,
                        "expert": expert_ports,
                        "no keepalive": old_ports,
                        "direct": direct_ports,
                    }[way][server.type]
                    rate = wrk(port_of, server.path, seconds)
                    rates.setdefault((server.type, way), []).append(rate)
                    print(f"round {index + 1}: {server.type:17} {way:13} {rate:9.0f} req/s")
            static.append(wrk(ports["gunicorn"], STATIC, seconds))
            print(f"round {index + 1}: static file through shipyard's nginx {static[-1]:.0f} req/s")
    finally:
        for process in running:
            process.stop()
        stop_runtime(HostLayout(home))
        shutil.rmtree(home, ignore_errors=True)
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return rates, static, {"rounds": rounds, "seconds": int(seconds)}


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{platform.platform()}; {model}; {os.cpu_count()} cores"


def report(
    rates: dict[tuple[str, str], list[float]],
    static: list[float],
    setup: dict[str, int],
    quick: bool,
) -> str:
    def med(server: str, way: str) -> float:
        return statistics.median(rates[(server, way)])

    load = os.getloadavg()[0]
    lines = [
        BEGIN,
        "## App servers through nginx",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
        + (" (quick run)" if quick else "")
        + f"; load average {load:.1f} at the end.",
        "",
        "Command: `PYTHONPATH=src .venv/bin/python bench/servers.py`. Each server deployed by",
        "shipyard with its rendered defaults (the examples' specs, `server.type` changed: 2",
        "workers each), then `wrk -t{} -c{} -d{}s` from this machine, {} rounds interleaved".format(
            WRK_THREADS, WRK_CONNECTIONS, setup["seconds"], setup["rounds"]
        ),
        "(every server, every way in, in a rotating order); medians, in requests per second.",
        "ASGI servers: the ASGI example's `/` (Starlette, plain text); aiohttp: a one-route",
        "aiohttp app's `/` (plain text); gunicorn (sync) and uWSGI: the Flask example's",
        "`/version` (JSON). *expert*: a hand-written nginx to the same",
        "socket (upstream keepalive for servers that keep connections, buffering, workers,",
        "buffered access log); *no keepalive*: shipyard's site config of before this change",
        "on that nginx; *direct*: the same server command bound to TCP, no nginx.",
        "",
        "| server | shipyard's nginx | expert nginx | shipyard / expert "
        "| shipyard before (no keepalive) | no nginx | shipyard / no nginx |",
        "|---|---|---|---|---|---|---|",
    ]
    for server in SERVERS:
        ours, expert, direct = (med(server.type, w) for w in ("shipyard", "expert", "direct"))
        before = (
            f"{med(server.type, 'no keepalive'):.0f}"
            if (server.type, "no keepalive") in rates
            else "n/a (uwsgi protocol)"
        )
        lines.append(
            f"| {server.type} | {ours:.0f} | {expert:.0f} | {ours / expert:.2f} | {before} "
            f"| {direct:.0f} | {ours / direct:.2f} |"
        )
    dynamic = med("gunicorn", "shipyard")
    lines += [
        "",
        f"Static file (`{STATIC}` of the Flask example) through shipyard's nginx: "
        f"{statistics.median(static):.0f} req/s, {statistics.median(static) / dynamic:.1f}x "
        "gunicorn's dynamic rate through the same nginx.",
        "",
        "Raw samples (req/s):",
        "",
    ]
    for (server_type, way), values in rates.items():
        lines.append(f"- {server_type}, {way}: " + ", ".join(f"{v:.0f}" for v in values))
    lines.append("- static: " + ", ".join(f"{v:.0f}" for v in static))
    lines += ["", END, ""]
    return "\n".join(lines)


def write_section(section: str) -> None:
    sections.write_section(BENCHMARKS, BEGIN, END, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    rates, static, setup = run(args.quick)
    section = report(rates, static, setup, args.quick)
    if not args.no_write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    main()
