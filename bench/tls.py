"""HTTPS against plain HTTP through shipyard's nginx, on the same route, in the same run.

Two example apps are deployed by shipyard with `[tls] mode = "files"` (a certificate from
a CA this script makes, ECDSA P-256) and `redirect = false`, so that the same route answers
on both ports: the Flask example's `/version` on gunicorn (the default server) and the ASGI
example's `/` on uvicorn (the fastest route: nginx's share of each request, TLS included,
is the largest there). Then, in rounds, every way of loading a route in turn, the plain
runs beside the HTTPS ones (the order reversed every round), keep-alive connections
throughout:

- HTTP/1.1: `wrk` to the plain port and to the HTTPS port;
- HTTP/2: `h2load` over HTTPS (ALPN h2), against `h2load --h1` to the plain port (the same
  tool and the same requests in flight: plain HTTP/2 would be h2c, which browsers never
  speak), twice: as a browser uses it, several requests at once on each connection, and
  with one request a connection, as HTTP/1.1 would.

The client runs on cores of its own, and nginx and the apps on the others (half the
cores each; `--shared-cores` lets them share): HTTPS is judged by what it costs the server,
and a client on the server's cores would count its own TLS work against it, which a
client on another machine never does.

Reported: the medians of the rates, and the median of the pairs' ratios (a shared
machine's load drifts between runs more than within a pair).
Traffic goes to 127.0.0.1 only; every run of wrk and h2load is bounded in time.
Usage: PYTHONPATH=src .venv/bin/python bench/tls.py [--quick] [--shared-cores] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import resource
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import sections
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from servers import (
    ROOT,
    WRK_CONNECTIONS,
    WRK_THREADS,
    free_port,
    machine,
    shipyard,
    wait_http,
    wrk_url,
)

from shipyard.host.layout import HostLayout
from shipyard.host.runtime import stop_runtime

BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- tls:begin -->", "<!-- tls:end -->"
HOST = "bench.shipyard.test"
# nginx ends a connection after 1000 requests (keepalive_requests), and h2load does not open
# another: an h2load run stays below that on each connection.
PER_CONNECTION = 950
SHARED_CORES = "client, nginx and apps share them: the client's TLS work counts against HTTPS."


@dataclass(frozen=True)
class Way:
    """One way to load a route: the tool, the protocol, how the requests in flight are
    carried (connections x streams on each)."""

    name: str
    tool: str  # "wrk" or "h2load"
    https: bool
    h2: bool = False
    connections: int = WRK_CONNECTIONS
    streams: int = 1


WRK_PLAIN = Way("http/1.1 plain", "wrk", https=False)
WRK_HTTPS = Way("http/1.1 https", "wrk", https=True)
H2LOAD_PLAIN = Way("h2load http/1.1 plain", "h2load", https=False)
# the same requests in flight as the HTTP/1.1 runs, carried as a browser does: a few
# connections, several streams on each
H2_STREAMS = 4
H2_MULTIPLEXED = Way(
    f"h2load h2 https, {H2_STREAMS} streams a connection",
    "h2load",
    https=True,
    h2=True,
    connections=WRK_CONNECTIONS // H2_STREAMS,
    streams=H2_STREAMS,
)
H2_SINGLE = Way("h2load h2 https, 1 stream a connection", "h2load", https=True, h2=True)
WAYS = (WRK_PLAIN, WRK_HTTPS, H2LOAD_PLAIN, H2_MULTIPLEXED, H2_SINGLE)
# Each row of the report: its protocol, the plain way and the HTTPS way it compares.
ROWS = (
    ("HTTP/1.1", WRK_PLAIN, WRK_HTTPS),
    (f"HTTP/2, {H2_STREAMS} streams a connection (plain: HTTP/1.1)", H2LOAD_PLAIN, H2_MULTIPLEXED),
    ("HTTP/2, 1 stream a connection (plain: HTTP/1.1)", H2LOAD_PLAIN, H2_SINGLE),
)


def make_certificate(where: Path) -> tuple[Path, Path]:
    """A CA and a leaf for HOST signed by it: the chain and the leaf's key, as PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipyard bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain, key_file = where / "fullchain.pem", where / "privkey.pem"
    chain.write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    )
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return chain, key_file


@dataclass(frozen=True)
class Route:
    """An example app deployed with HTTPS beside plain HTTP, and the route measured."""

    example: str
    server: str
    path: str
    plain: int = field(default_factory=free_port)
    https: int = field(default_factory=free_port)

    @property
    def app(self) -> str:
        return f"tls-{self.server}"


ROUTES = (
    Route("flask-factory", "gunicorn", "/version"),  # the default WSGI server
    Route("asgi-app", "uvicorn", "/"),  # the fastest route: nginx's share is the largest
)


def deploy(home: Path, work: Path, route: Route, chain: Path, key: Path) -> None:
    project = work / route.app
    shutil.copytree(
        ROOT / "examples" / route.example,
        project,
        ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", "instance"),
    )
    spec = project / "shipyard.toml"
    text = re.sub(r"^name = .*$", f'name = "{route.app}"', spec.read_text(), count=1, flags=re.M)
    spec.write_text(
        f'listen = "127.0.0.1:{route.plain}"\ndomains = ["{HOST}"]\n'
        + text
        + f'\n[tls]\nmode = "files"\ncertificate = "{chain}"\nkey = "{key}"\n'
        f'listen = "127.0.0.1:{route.https}"\nredirect = false\n'
    )
    shipyard(home, "deploy", str(project), "--skip-tests")


@dataclass(frozen=True)
class Load:
    """What one run measured."""

    rate: float  # requests per second
    requests: int


def wrk_for(url: str, seconds: float) -> Load:
    rate = wrk_url(url, seconds, HOST)
    return Load(rate, round(rate * seconds))


def h2load(url: str, way: Way, requests: int) -> Load:
    """One h2load run of `requests` requests (a count, not -D: h2load 1.52's timed mode
    never ends over HTTP/1.1)."""
    out = subprocess.run(
        [
            "h2load",
            *(() if way.h2 else ("--h1",)),
            f"-t{min(WRK_THREADS, way.connections)}",
            f"-c{way.connections}",
            f"-m{way.streams}",
            "-n",
            str(requests),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    found = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    failed = re.search(r"(\d+) failed, (\d+) errored", out)
    if found is None or failed is None:
        raise RuntimeError(f"no rate in h2load's output:\n{out}")
    if int(failed.group(1)) or int(failed.group(2)):
        raise RuntimeError(f"h2load saw failures on {url}:\n{out}")
    if way.h2 and "Application protocol: h2" not in out:
        raise RuntimeError(f"h2load did not negotiate h2 on {url}:\n{out}")
    return Load(float(found.group(1)), requests)


def h2load_for(url: str, way: Way, seconds: float, per_run: int) -> Load:
    """h2load runs of `per_run` requests, one after another, for about `seconds`."""
    requests, spent = 0, 0.0
    while spent < seconds * 0.9:
        load = h2load(url, way, per_run)
        requests += load.requests
        spent += load.requests / load.rate
    return Load(requests / spent, requests)


def measure(url: str, way: Way, seconds: float) -> Callable[[], Load]:
    """A run of `way` on `url`, about `seconds` long."""
    if way.tool == "wrk":
        return partial(wrk_for, url, seconds)
    # runs of a count: about `seconds` long at the rate a short run shows, within what
    # nginx lets each connection carry
    most = way.connections * PER_CONNECTION
    rate = h2load(url, way, min(2000, most)).rate
    return partial(h2load_for, url, way, seconds, min(most, max(1000, int(rate * seconds))))


Rates = dict[tuple[str, str], list[float]]  # (server, way's name) -> samples


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0  # exited
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nginx_cpu(home: Path) -> float:
    """CPU seconds nginx's workers (and master) under `home` have used so far."""
    master = int((HostLayout(home).nginx_dir / "nginx.pid").read_text())
    try:
        workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    except OSError:
        workers = []
    return sum(_cpu_seconds(pid) for pid in [master, *map(int, workers)])


def client_cpu() -> float:
    """CPU seconds this script's finished children (wrk, h2load) have used so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Costs:
    """CPU microseconds per request, nginx's and the client's, per (server, way)."""

    nginx: Rates = field(default_factory=dict)
    client: Rates = field(default_factory=dict)

    def measured(self, key: tuple[str, str], home: Path, run: Callable[[], Load]) -> float:
        nginx_before, client_before = nginx_cpu(home), client_cpu()
        load = run()
        nginx, client = nginx_cpu(home) - nginx_before, client_cpu() - client_before
        self.nginx.setdefault(key, []).append(nginx / load.requests * 1e6)
        self.client.setdefault(key, []).append(client / load.requests * 1e6)
        return load.rate


def split_cores() -> tuple[set[int], set[int]] | None:
    """The cores for the server side (nginx, the apps) and for the client: a half each,
    the server's the larger. None on a single core."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    half = (len(cores) + 1) // 2
    return set(cores[:half]), set(cores[half:])


def pin_tree(root: int, cores: set[int]) -> None:
    """Pins every thread of `root` and of its descendants to `cores` (what they fork later
    inherits it)."""
    pending = [root]
    while pending:
        pid = pending.pop()
        try:
            threads = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue  # exited
        for thread in threads:
            try:
                os.sched_setaffinity(int(thread), cores)
                children = Path(f"/proc/{pid}/task/{thread}/children").read_text().split()
            except (ProcessLookupError, FileNotFoundError):
                continue
            pending += map(int, children)


def separate_client(home: Path) -> str:
    """Puts the runtime under `home` (supervisord, nginx, the apps) on the server's cores
    and this script, with the clients it starts, on the others; says where each runs."""
    split = split_cores()
    if split is None:
        return SHARED_CORES
    server, client = split
    supervisord = int(HostLayout(home).supervisor_pidfile.read_text())
    pin_tree(supervisord, server)
    os.sched_setaffinity(0, client)
    return (
        f"nginx and the apps on core(s) {', '.join(map(str, sorted(server)))}, the client on "
        f"core(s) {', '.join(map(str, sorted(client)))} (a client elsewhere does its TLS work "
        "on its own machine)."
    )


def run(quick: bool, shared_cores: bool) -> tuple[Rates, Costs, dict[str, int | str]]:
    rounds, seconds = (1, 2) if quick else (20, 2)
    work = Path(tempfile.mkdtemp(prefix="sy-tls-bench-"))
    home = Path(tempfile.mkdtemp(prefix="sytls", dir="/tmp"))
    rates: Rates = {(route.server, way.name): [] for route in ROUTES for way in WAYS}
    cores = SHARED_CORES
    costs = Costs()
    all_cores = os.sched_getaffinity(0)
    try:
        chain, key = make_certificate(work)
        for route in ROUTES:
            deploy(home, work, route, chain, key)
            wait_http(route.plain, route.path, route.app)
        if not shared_cores:
            cores = separate_client(home)
        runs: list[tuple[tuple[str, str], Callable[[], Load]]] = []
        for route in ROUTES:
            urls = {
                False: f"http://127.0.0.1:{route.plain}{route.path}",
                True: f"https://127.0.0.1:{route.https}{route.path}",
            }
            runs += [
                ((route.server, way.name), measure(urls[way.https], way, seconds)) for way in WAYS
            ]
        for _, warm_up in runs:  # workers, caches
            warm_up()
        # Every way of a route right after the others, their order reversed every round:
        # the load of a shared machine drifts between runs more than within a round.
        for index in range(rounds):
            for series, measured in runs if index % 2 == 0 else runs[::-1]:
                rates[series].append(costs.measured(series, home, measured))
    finally:
        os.sched_setaffinity(0, all_cores)
        stop_runtime(HostLayout(home))
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return rates, costs, {"rounds": rounds, "seconds": seconds, "cores": cores}


def report(rates: Rates, costs: Costs, setup: dict[str, int | str], quick: bool) -> str:
    lines = [
        BEGIN,
        "## HTTPS against plain HTTP through shipyard's nginx",
        "",
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
        + (" (quick run)" if quick else "")
        + f"; load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "Command: `PYTHONPATH=src .venv/bin/python bench/tls.py`. Two example apps deployed by",
        'shipyard with `[tls] mode = "files"` (an ECDSA P-256 certificate; the rendered',
        "Mozilla intermediate profile) and `redirect = false`, so that the same route answers",
        "on both ports: the Flask example's `/version` on gunicorn (the default server) and",
        "the ASGI example's `/` on uvicorn (the fastest route, where nginx's share of a",
        "request, TLS included, is the largest); 2 workers each. Keep-alive connections,",
        f"{WRK_CONNECTIONS} requests in flight, wrk {setup['seconds']} s a run (h2load runs of a",
        "count about as long: its timed mode never ends over HTTP/1.1);",
        f"{setup['rounds']} rounds, each plain run beside its HTTPS runs (their order reversed",
        "every round); medians in requests per second, and the median of each round's ratio,",
        "from this one run. HTTP/2 is over TLS (ALPN h2), against HTTP/1.1 on the plain port",
        "with the same tool: plain HTTP/2 would be h2c, which browsers never speak. HTTP/2",
        f"carries the {WRK_CONNECTIONS} requests in flight as a browser does ({H2_STREAMS} streams",
        "on each connection), and, for comparison, one a connection as HTTP/1.1 does.",
        f"Cores: {setup['cores']}",
        "",
        "| route | protocol | tool | plain HTTP | HTTPS | HTTPS / plain |",
        "|---|---|---|---|---|---|",
    ]
    for route in ROUTES:
        name = f"{route.server} `{route.path}`"
        for protocol, plain_way, https_way in ROWS:
            plain_runs = rates[(route.server, plain_way.name)]
            https_runs = rates[(route.server, https_way.name)]
            ratio = statistics.median(h / p for p, h in zip(plain_runs, https_runs, strict=True))
            lines.append(
                f"| {name} | {protocol} | {https_way.tool} | {statistics.median(plain_runs):.0f} "
                f"| {statistics.median(https_runs):.0f} | {ratio:.2f} |"
            )
    lines += [
        "",
        "What each request cost in CPU, in microseconds (medians): nginx's workers, which is",
        "what HTTPS costs the server, and the client's (wrk's or h2load's).",
        "",
        "| route | protocol | nginx, plain | nginx, HTTPS | client, plain | client, HTTPS |",
        "|---|---|---|---|---|---|",
    ]
    for route in ROUTES:
        for protocol, plain_way, https_way in ROWS:
            cells = [
                f"{statistics.median(spent[(route.server, way.name)]):.1f}"
                for spent in (costs.nginx, costs.client)
                for way in (plain_way, https_way)
            ]
            lines.append(
                f"| {route.server} `{route.path}` | {protocol} | " + " | ".join(cells) + " |"
            )
    lines += ["", "Raw samples (req/s):", ""]
    for (server, way), values in rates.items():
        lines.append(f"- {server}, {way}: " + ", ".join(f"{v:.0f}" for v in values))
    lines += ["", END, ""]
    return "\n".join(lines)


def write_section(section: str) -> None:
    sections.write_section(BENCHMARKS, BEGIN, END, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument(
        "--shared-cores", action="store_true", help="the client on nginx's and the apps' cores"
    )
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    rates, costs, setup = run(args.quick, args.shared_cores)
    section = report(rates, costs, setup, args.quick)
    if not args.no_write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    main()
