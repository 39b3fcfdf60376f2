"""Warm redeploys of the Django example against the Flask example's, in one run.

Both examples are deployed once (tests on: that warms the caches), then redeployed with a
one-line code change and --skip-tests, in turns, so machine noise hits both; each time runs
from the command's start until nginx serves the new text at /version. Writes its section of
BENCHMARKS.md. Traffic goes to 127.0.0.1 only; every loop is bounded.
Usage: .venv/bin/python bench/django_compare.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sections

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"
SHIPYARD = [str(Path(sys.executable).with_name("shipyard"))]  # the program, as users run it
BEGIN, END = "<!-- django:begin -->", "<!-- django:end -->"
GOAL = 1.5  # Django's warm redeploy at most this many times Flask's


@dataclass(frozen=True)
class Example:
    label: str
    source: Path
    views: str  # the file holding GREETING = "..."
    port: int


EXAMPLES = (
    Example(
        "Flask (examples/flask-factory)",
        ROOT / "examples" / "flask-factory",
        "flaskr/views.py",
        18094,
    ),
    Example(
        "Django (examples/django-site)", ROOT / "examples" / "django-site", "notes/views.py", 18095
    ),
)


def version(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/version")
        response = conn.getresponse()
        return response.read().decode() if response.status == 200 else ""
    finally:
        conn.close()


def wait_for(port: int, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if version(port) == text:
                return
        time.sleep(0.005)
    raise RuntimeError(f"port {port} never served {text!r}")


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.cache = work / "cache"
        self.warm_dir = work / "warm"  # this run's warm servers (cli/warm.py), not the user's
        self.warm_dir.mkdir(mode=0o700)
        self.homes: dict[str, Path] = {}
        self.projects: dict[str, Path] = {}
        for example in EXAMPLES:
            project = work / example.source.name
            shutil.copytree(
                example.source,
                project,
                ignore=shutil.ignore_patterns(
                    "__pycache__", ".pytest_cache", "instance", "*.sqlite3"
                ),
            )
            spec = project / "shipyard.toml"
            spec.write_text(f'listen = "127.0.0.1:{example.port}"\n' + spec.read_text())
            self.projects[example.label] = project
            self.homes[example.label] = Path(tempfile.mkdtemp(prefix="sydj", dir="/tmp"))

    def deploy(self, example: Example, *extra: str) -> None:
        env = {
            **os.environ,
            "SHIPYARD_HOME": str(self.homes[example.label]),
            "SHIPYARD_CACHE": str(self.cache),
            "SHIPYARD_WARM_DIR": str(self.warm_dir),
        }
        project = str(self.projects[example.label])
        subprocess.run(
            [*SHIPYARD, "deploy", project, *extra], env=env, check=True, capture_output=True
        )

    def set_greeting(self, example: Example, text: str) -> None:
        views = self.projects[example.label] / example.views
        views.write_text(
            re.sub(r'^GREETING = "[^"]*"', f'GREETING = "{text}"', views.read_text(), flags=re.M)
        )

    def redeploy(self, example: Example, text: str) -> float:
        self.set_greeting(example, text)
        started = time.monotonic()
        self.deploy(example, "--skip-tests")
        wait_for(example.port, text)
        return time.monotonic() - started

    def cleanup(self) -> None:
        from shipyard.host.layout import HostLayout
        from shipyard.host.runtime import stop_runtime

        for home in self.homes.values():
            stop_runtime(HostLayout(home))
            shutil.rmtree(home, ignore_errors=True)
        for lock in self.warm_dir.glob("*.lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(lock.read_text().split()[0]), signal.SIGTERM)
        shutil.rmtree(self.work, ignore_errors=True)


def run(reps: int) -> dict[str, list[float]]:
    bench = Bench(Path(tempfile.mkdtemp(prefix="shipyard-django-bench-")))
    times: dict[str, list[float]] = {e.label: [] for e in EXAMPLES}
    try:
        for example in EXAMPLES:
            bench.deploy(example)  # tests on: the test venv, wheel store and locks get made
            bench.redeploy(example, "warm-up")  # and the warm server, the build venv
        for rep in range(reps):
            order = EXAMPLES if rep % 2 == 0 else tuple(reversed(EXAMPLES))
            for example in order:
                times[example.label].append(bench.redeploy(example, f"bench {rep}"))
    finally:
        bench.cleanup()
    return times


def report(times: dict[str, list[float]], quick: bool) -> str:
    flask, django = (statistics.median(times[e.label]) for e in EXAMPLES)
    ratio = django / flask
    lines = [
        BEGIN,
        "## Django against Flask: a warm redeploy",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}; "
        f"{os.cpu_count()} cores" + (" (quick run)" if quick else "") + ".",
        "",
        "Command: `.venv/bin/python bench/django_compare.py`. Each example deployed once with",
        "its tests, then redeployed with a one-line code change (`GREETING`) and",
        "`--skip-tests`, the two in turns; from the command's start until nginx serves the new",
        "text. Medians. The Django example's redeploy collects no static file again (the",
        "collected set is reused while the static inputs are unchanged: build/django_static.py)",
        "and runs `migrate` as its release command, while its new server starts (host/switch.py).",
        "",
        "| measurement | Flask | Django | Django / Flask | goal |",
        "|---|---|---|---|---|",
        f"| warm redeploy, one-line change, --skip-tests | {flask:.2f} s | {django:.2f} s "
        f"| {ratio:.2f} | ≤ {GOAL} |",
        "",
    ]
    lines += [
        f"- {label}: " + ", ".join(f"{v:.2f}" for v in values) for label, values in times.items()
    ]
    lines += ["", END, ""]
    return "\n".join(lines)


def write_section(section: str) -> None:
    sections.write_section(BENCHMARKS, BEGIN, END, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    section = report(run(2 if args.quick else 7), args.quick)
    write_section(section)
    print(section)


if __name__ == "__main__":
    main()
