"""HTTPS against plain HTTP through shipyard's nginx, on the same route, in the same run.

Two example apps are deployed by shipyard with `[tls] mode = "files"` (a certificate from
a CA this script makes, ECDSA P-256) and `redirect = false`, so that the same route answers
on both ports: the Flask example's `/version` on gunicorn (the default server) and the ASGI
example's `/` on uvicorn (the fastest route: nginx's share of each request, TLS included,
is the largest there). Then, in rounds, each plain run right beside its HTTPS run (the
pair's order swapped every round), keep-alive connections throughout:

- HTTP/1.1: `wrk` to the plain port and to the HTTPS port;
- HTTP/2: `h2load` over HTTPS (ALPN h2), against `h2load --h1` to the plain port (the same
  tool and the same concurrency: plain HTTP/2 would be h2c, which browsers never speak).

Reported: the medians of the rates, and the median of the pairs' ratios (a shared
machine's load drifts between runs more than within a pair).
Traffic goes to 127.0.0.1 only; every run of wrk and h2load is bounded in time.
Usage: PYTHONPATH=src .venv/bin/python bench/tls.py [--quick] [--no-write]
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
# another: a run stays below 1000 per connection.
MAX_COUNT = WRK_CONNECTIONS * 950
WAYS = ("http/1.1 plain", "http/1.1 https", "h2load http/1.1 plain", "h2load h2 https")


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


def h2load(url: str, requests: int, h1: bool) -> float:
    """h2load's rate over `requests` requests: one stream per connection, as many
    connections as wrk opens (a count, not -D: h2load 1.52's timed mode never ends over
    HTTP/1.1)."""
    out = subprocess.run(
        [
            "h2load",
            *(["--h1"] if h1 else []),
            f"-t{WRK_THREADS}",
            f"-c{WRK_CONNECTIONS}",
            "-m1",
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
    if not h1 and "Application protocol: h2" not in out:
        raise RuntimeError(f"h2load did not negotiate h2 on {url}:\n{out}")
    return float(found.group(1))


Rates = dict[tuple[str, str], list[float]]  # (server, way) -> samples


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

    def measured(
        self,
        key: tuple[str, str],
        home: Path,
        run: Callable[[], float],
        seconds: float,
        count: int | None,
    ) -> float:
        nginx_before, client_before = nginx_cpu(home), client_cpu()
        rate = run()
        requests = count if count is not None else rate * seconds
        self.nginx.setdefault(key, []).append((nginx_cpu(home) - nginx_before) / requests * 1e6)
        self.client.setdefault(key, []).append((client_cpu() - client_before) / requests * 1e6)
        return rate


@dataclass(frozen=True)
class Pair:
    """One route and protocol: its plain run and its HTTPS run, measured side by side."""

    server: str
    plain_way: str
    https_way: str
    plain: Callable[[], float]
    https: Callable[[], float]
    count: int | None = None  # h2load's requests a run; wrk's are its rate times its seconds


def run(quick: bool) -> tuple[Rates, Costs, dict[str, int]]:
    rounds, seconds = (1, 2) if quick else (9, 3)
    work = Path(tempfile.mkdtemp(prefix="sy-tls-bench-"))
    home = Path(tempfile.mkdtemp(prefix="sytls", dir="/tmp"))
    rates: Rates = {(route.server, way): [] for route in ROUTES for way in WAYS}
    counts: dict[str, int] = {}
    costs = Costs()
    try:
        chain, key = make_certificate(work)
        pairs: list[Pair] = []
        for route in ROUTES:
            deploy(home, work, route, chain, key)
            wait_http(route.plain, route.path, route.app)
            plain = f"http://127.0.0.1:{route.plain}{route.path}"
            https = f"https://127.0.0.1:{route.https}{route.path}"
            # h2load runs a count: about `seconds` long at the rate a short run shows
            rate = min(h2load(plain, 2000, h1=True), h2load(https, 2000, h1=False))
            count = counts[route.server] = min(MAX_COUNT, max(2000, int(rate * seconds)))
            pairs += [
                Pair(
                    route.server,
                    WAYS[0],
                    WAYS[1],
                    partial(wrk_url, plain, seconds, HOST),
                    partial(wrk_url, https, seconds, HOST),
                ),
                Pair(
                    route.server,
                    WAYS[2],
                    WAYS[3],
                    partial(h2load, plain, count, True),
                    partial(h2load, https, count, False),
                    count,
                ),
            ]
        for pair in pairs:  # warm-up: workers, caches
            pair.plain(), pair.https()
        # Each plain run right beside its HTTPS run, their order swapped every round: the
        # load of a shared machine drifts between runs more than within a pair.
        for index in range(rounds):
            for pair in pairs:
                runs = [(pair.plain, pair.plain_way), (pair.https, pair.https_way)]
                for measure, way in runs if index % 2 == 0 else runs[::-1]:
                    series = (pair.server, way)
                    rates[series].append(costs.measured(series, home, measure, seconds, pair.count))
    finally:
        stop_runtime(HostLayout(home))
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return rates, costs, {"rounds": rounds, "seconds": seconds, **counts}


def report(rates: Rates, costs: Costs, setup: dict[str, int], quick: bool) -> str:
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
        f"{WRK_THREADS} threads x {WRK_CONNECTIONS} connections, wrk {setup['seconds']} s a run,",
        "h2load a count of requests about as long (its timed mode never ends over HTTP/1.1);",
        f"{setup['rounds']} rounds, each plain run beside its HTTPS run (their order swapped",
        "every round); medians in requests per second, and the median of the pairs' ratios,",
        "from this one run. HTTP/2 is over TLS (ALPN h2), against HTTP/1.1 on the plain port",
        "with the same tool: plain HTTP/2 would be h2c, which browsers never speak. Client, nginx",
        "and app share the machine's cores: the client's TLS work is counted against HTTPS.",
        "",
        "| route | protocol | tool | plain HTTP | HTTPS | HTTPS / plain |",
        "|---|---|---|---|---|---|",
    ]
    for route in ROUTES:
        name = f"{route.server} `{route.path}`"
        for protocol, tool, (plain_way, https_way) in (
            ("HTTP/1.1", "wrk", WAYS[:2]),
            ("HTTP/2 (plain: HTTP/1.1)", "h2load", WAYS[2:]),
        ):
            plain_runs = rates[(route.server, plain_way)]
            https_runs = rates[(route.server, https_way)]
            ratio = statistics.median(h / p for p, h in zip(plain_runs, https_runs, strict=True))
            lines.append(
                f"| {name} | {protocol} | {tool} | {statistics.median(plain_runs):.0f} "
                f"| {statistics.median(https_runs):.0f} | {ratio:.2f} |"
            )
    lines += [
        "",
        "What each request cost in CPU, in microseconds (medians): nginx's workers, which is",
        "what HTTPS costs the server, and the client's, which shares the cores here and would",
        "not on a real deployment.",
        "",
        "| route | protocol | nginx, plain | nginx, HTTPS | client, plain | client, HTTPS |",
        "|---|---|---|---|---|---|",
    ]
    for route in ROUTES:
        for protocol, (plain_way, https_way) in (("HTTP/1.1", WAYS[:2]), ("HTTP/2", WAYS[2:])):
            cells = [
                f"{statistics.median(spent[(route.server, way)]):.1f}"
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
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    rates, costs, setup = run(args.quick)
    section = report(rates, costs, setup, args.quick)
    if not args.no_write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    main()
