"""Side-by-side benchmark: shipyard against the seed's manual steps as a script.

Runs both on copies of the example app in one run, interleaved so machine noise hits both,
and writes BENCHMARKS.md. Traffic goes to 127.0.0.1 only; every loop is bounded.
Usage: .venv/bin/python bench/compare.py [--quick]
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
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask-factory"
SHIPYARD = [str(ROOT / ".venv" / "bin" / "shipyard")]  # the program, as users run it
SCRIPT = ROOT / "bench" / "seed_script.sh"
SHIPYARD_PORT, SCRIPT_PORT = 18080, 18081
FLEET_BEGIN = "<!-- fleet:begin -->"  # bench/fleet_compare.py writes from there on
LOCAL_NOTES = "## Reading the figures"  # written by hand after each run


def get(port: int, path: str = "/version") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_for(port: int, body: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port) == (200, body):
                return
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"port {port} never served {body!r}")


def set_greeting(project: Path, text: str) -> None:
    views = project / "flaskr" / "views.py"
    source = views.read_text()
    views.write_text(re.sub(r'^GREETING = ".*"$', f'GREETING = "{text}"', source, flags=re.M))


@dataclass
class Load:
    """Threads sending GETs, a new connection each, bounded in count and time."""

    port: int
    threads: int = 4
    ok: int = 0
    failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        for _ in range(200_000):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            try:
                good = get(self.port)[0] == 200
            except OSError:
                good = False
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._run) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> tuple[int, int]:
        self._stop.set()
        for worker in self._workers:
            worker.join()
        return self.ok, self.failed


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.cache = work / "cache"
        self.sy_project = work / "sy-app"
        self.sc_project = work / "script-app"
        for project, port in ((self.sy_project, SHIPYARD_PORT), (self.sc_project, SCRIPT_PORT)):
            shutil.copytree(
                EXAMPLE,
                project,
                ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", "instance"),
            )
            spec = project / "shipyard.toml"
            # init-db on every deploy, as the seed's steps run it (the example runs it once)
            text = spec.read_text().replace("\nsetup = ", "\nrelease = ")
            spec.write_text(f'listen = "127.0.0.1:{port}"\n' + text)
        self.homes: list[Path] = []
        self.script_works: list[Path] = []
        self.counter = 0
        self.warm_dir = work / "warm"  # this run's warm servers (cli/warm.py), not the user's
        self.warm_dir.mkdir(mode=0o700)

    def env(self, home: Path, warm: bool = True) -> dict[str, str]:
        return {
            **os.environ,
            "SHIPYARD_HOME": str(home),
            "SHIPYARD_CACHE": str(self.cache),
            "SHIPYARD_WARM_DIR": str(self.warm_dir),
            "SHIPYARD_WARM": "1" if warm else "0",
        }

    def new_home(self) -> Path:
        home = Path(tempfile.mkdtemp(prefix="syb", dir="/tmp"))
        self.homes.append(home)
        return home

    def shipyard(self, home: Path, *args: str, warm: bool = True) -> None:
        env = self.env(home, warm)
        subprocess.run([*SHIPYARD, *args], env=env, check=True, capture_output=True, text=True)

    def until_first_stage(self, home: Path, warm: bool) -> float:
        """From the program's start to its first finished stage of a redeploy."""
        started = time.monotonic()
        proc = subprocess.Popen(
            [*SHIPYARD, "deploy", str(self.sy_project), "--skip-tests"],
            env=self.env(home, warm),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        first = None
        for line in proc.stderr:
            if first is None and line.startswith("✓"):
                first = time.monotonic() - started
        assert proc.wait() == 0 and first is not None
        return first

    def wait_for_warm_server(self) -> None:
        deadline = time.monotonic() + 60
        while not list(self.warm_dir.glob("*.sock")) and time.monotonic() < deadline:
            time.sleep(0.05)

    def script(self, work: Path, mode: str = "deploy") -> None:
        env = {
            **os.environ,
            "APP_DIR": str(self.sc_project),
            "WORK": str(work),
            "PORT": str(SCRIPT_PORT),
        }
        subprocess.run(["bash", str(SCRIPT), mode], env=env, check=True, capture_output=True)

    def new_script_work(self) -> Path:
        work = Path(tempfile.mkdtemp(prefix="scb", dir="/tmp"))
        self.script_works.append(work)
        return work

    def greeting(self) -> str:
        self.counter += 1
        return f"bench {self.counter}"

    def cleanup(self) -> None:
        from shipyard.host.layout import HostLayout
        from shipyard.host.runtime import stop_runtime

        for home in self.homes:
            stop_runtime(HostLayout(home))
            shutil.rmtree(home, ignore_errors=True)
        for work in self.script_works:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.script(work, "stop")
            shutil.rmtree(work, ignore_errors=True)

    def stop_warm_servers(self) -> None:
        for lock in self.warm_dir.glob("*.lock"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                os.kill(int(lock.read_text().split()[0]), signal.SIGTERM)


def timed(action: Callable[..., object], *args: object) -> float:
    started = time.monotonic()
    action(*args)
    return time.monotonic() - started


def script_until_served(bench: Bench, work: Path, text: str) -> None:
    bench.script(work)
    wait_for(SCRIPT_PORT, text)


def shipyard_until_served(
    bench: Bench, home: Path, text: str, extra: tuple[str, ...], warm: bool = True
) -> None:
    bench.shipyard(home, "deploy", str(bench.sy_project), *extra, warm=warm)
    wait_for(SHIPYARD_PORT, text)


def run(quick: bool) -> dict[str, list[float] | tuple[int, int]]:
    reps_cold, reps_warm, reps_load = (1, 2, 3) if quick else (3, 5, 10)
    results: dict[str, list[float] | tuple[int, int]] = {}
    work = Path(tempfile.mkdtemp(prefix="shipyard-bench-"))
    bench = Bench(work)
    try:
        # warm the caches once (wheel store, locks, test venv; pip's cache for the script)
        bench.shipyard(bench.new_home(), "deploy", str(bench.sy_project))
        bench.wait_for_warm_server()  # the first command left it behind
        bench.script(bench.new_script_work())
        bench.cleanup()
        bench.homes, bench.script_works = [], []

        cold_sy, cold_sc = [], []
        for _ in range(reps_cold):
            # cold: only the wheel store, resolved locks and the test venv stay warm
            for built in ("artifacts", "tests-passed"):
                shutil.rmtree(bench.cache / built, ignore_errors=True)
            home, sc_work = bench.new_home(), bench.new_script_work()
            cold_sy.append(timed(bench.shipyard, home, "deploy", str(bench.sy_project)))
            cold_sc.append(timed(bench.script, sc_work))
            if len(cold_sy) < reps_cold:
                bench.cleanup()
                bench.homes, bench.script_works = [], []
        results["cold: shipyard"], results["cold: script"] = cold_sy, cold_sc
        home, sc_work = bench.homes[-1], bench.script_works[-1]

        warm: dict[str, list[float]] = {
            "shipyard (tests on)": [],
            "shipyard --skip-tests": [],
            "shipyard --skip-tests, warm start off": [],
            "script": [],
        }
        for _ in range(reps_warm):
            for label in warm:
                text = bench.greeting()
                if label == "script":
                    set_greeting(bench.sc_project, text)
                    warm[label].append(timed(script_until_served, bench, sc_work, text))
                else:
                    set_greeting(bench.sy_project, text)
                    extra = ("--skip-tests",) if "skip" in label else ()
                    on = "off" not in label
                    warm[label].append(timed(shipyard_until_served, bench, home, text, extra, on))
        for label, values in warm.items():
            results[f"warm redeploy: {label}"] = values

        first: dict[str, list[float]] = {"warm start": [], "warm start off": []}
        for _ in range(reps_warm):
            for label in first:
                set_greeting(bench.sy_project, bench.greeting())
                first[label].append(bench.until_first_stage(home, "off" not in label))
        for label, values in first.items():
            results[f"start-up to the first stage: {label}"] = values

        rollbacks = []
        for _ in range(reps_warm):
            before = get(SHIPYARD_PORT)[1]
            rollbacks.append(timed(bench.shipyard, home, "rollback", str(bench.sy_project)))
            assert get(SHIPYARD_PORT)[1] != before
        results["rollback: shipyard"] = rollbacks

        for label, port in (("shipyard", SHIPYARD_PORT), ("script", SCRIPT_PORT)):
            load = Load(port)
            load.start()
            for _ in range(reps_load):
                text = bench.greeting()
                if label == "script":
                    set_greeting(bench.sc_project, text)
                    bench.script(sc_work)
                else:
                    set_greeting(bench.sy_project, text)
                    bench.shipyard(home, "deploy", str(bench.sy_project), "--skip-tests")
                wait_for(port, text)
            results[f"load: {label}"] = load.stop()
    finally:
        bench.cleanup()
        bench.stop_warm_servers()
        shutil.rmtree(work, ignore_errors=True)
    return results


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


def report(results: dict[str, list[float] | tuple[int, int]], quick: bool) -> str:
    def med(key: str) -> float:
        values = results[key]
        assert isinstance(values, list)
        return statistics.median(values)

    lines = [
        "# Benchmarks",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine()}"
        + (" (quick run)" if quick else "")
        + ".",
        "Produced by `.venv/bin/python bench/compare.py`: shipyard and the seed's manual",
        "steps as a plain script (`bench/seed_script.sh`: venv, pip install, configs,",
        "`supervisorctl restart`, nginx reload) on copies of `examples/flask-factory`, in the",
        "same run, interleaved. Times run from command start until the new content is served",
        "through nginx. The figures are medians. This machine is shared and noisy, so compare",
        "the ratios, not the absolute values.",
        "",
        "| measurement | shipyard | script | shipyard / script | goal |",
        "|---|---|---|---|---|",
    ]
    cold_sy, cold_sc = med("cold: shipyard"), med("cold: script")
    lines.append(
        "| cold deploy (empty base dir, no artifact, warm wheel cache) "
        f"| {cold_sy:.2f} s | {cold_sc:.2f} s "
        f"| {cold_sy / cold_sc:.2f} | ≤ 15 s |"
    )
    script_warm = med("warm redeploy: script")
    labels = (
        "shipyard (tests on)",
        "shipyard --skip-tests",
        "shipyard --skip-tests, warm start off",
    )
    for label in labels:
        value = med(f"warm redeploy: {label}")
        lines.append(
            f"| warm redeploy, one-line change, {label} | {value:.2f} s | {script_warm:.2f} s "
            f"| {value / script_warm:.2f} ({script_warm / value:.1f}x faster) | ≤ 2 s, ≥ 3x |"
        )
    lines.append(
        f"| rollback | {med('rollback: shipyard'):.2f} s | n/a (the script has none) | | ≤ 1 s |"
    )
    on, off = (med(f"start-up to the first stage: warm start{s}") for s in ("", " off"))
    lines.append(
        f"| start-up to the first stage of a redeploy, warm start on (off) | {on:.2f} s "
        f"({off:.2f} s) | n/a | on / off {on / off:.2f} | ≤ 0.08 s |"
    )
    sy_ok, sy_failed = results["load: shipyard"]  # type: ignore[misc]
    sc_ok, sc_failed = results["load: script"]  # type: ignore[misc]
    lines.append(
        f"| failed requests during consecutive redeploys under load | {sy_failed} of "
        f"{sy_ok + sy_failed} | {sc_failed} of {sc_ok + sc_failed} | | 0 |"
    )
    lines += ["", "Raw samples (seconds):", ""]
    for key, values in results.items():
        if isinstance(values, list):
            lines.append(f"- {key}: " + ", ".join(f"{v:.2f}" for v in values))
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args()
    results = run(args.quick)
    text = report(results, args.quick)
    write_local_section(ROOT / "BENCHMARKS.md", text)
    print(text)


def write_local_section(path: Path, section: str) -> None:
    """Replace the local figures, which open the file, and keep what follows them: the notes
    written by hand, then the fleet section."""
    old = path.read_text() if path.exists() else ""
    starts = [old.index(mark) for mark in (LOCAL_NOTES, FLEET_BEGIN) if mark in old]
    kept = old[min(starts) :] if starts else ""
    path.write_text(section + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    main()
