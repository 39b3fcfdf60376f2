"""The fault table: every fault and bad input tried, written into RELIABILITY.md.

Two sources, in one run:
- the fault tests (`pytest -m fault`: real nginx, supervisord, app servers and namespace
  hosts) append a row per case to $SHIPYARD_FAULT_REPORT (tests/faultreport.py); this script
  runs them with it set;
- bad inputs, each given here to the program on a copy of the example: a spec value, a
  command-line argument, a corrupt state or config file; its exit code and what it said.

A bad input that exits 0 or 70, or prints a traceback, fails the run (exit 1), and so does a
fault test that fails.
Usage: .venv/bin/python bench/reliability.py [--inputs-only]   (root: namespaces, tmpfs)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "flask-factory"
SHIPYARD = str(ROOT / ".venv" / "bin" / "shipyard")
PYTEST = str(ROOT / ".venv" / "bin" / "pytest")
OUTPUT = ROOT / "RELIABILITY.md"
HAND_NOTES = "## Reading the table"  # written by hand; kept across runs


@dataclass(frozen=True)
class BadInput:
    """One bad input: a change to the example's spec (or files), then a command."""

    what: str
    argv: tuple[str, ...] = ("check",)
    top: str = ""  # top-level keys, placed before the spec's tables
    replace: tuple[str, str] | None = None  # (old, new) in the spec's text
    tables: str = ""  # appended tables
    prepare: Callable[[Path, Path], None] | None = field(default=None, compare=False)


def _state(text: str) -> Callable[[Path, Path], None]:
    def write(_project: Path, base: Path) -> None:
        (base / "flaskr").mkdir(parents=True, exist_ok=True)
        (base / "flaskr" / "state.json").write_text(text)

    return write


def _config(text: str) -> Callable[[Path, Path], None]:
    def write(_project: Path, base: Path) -> None:
        shared = base / "flaskr" / "shared"
        shared.mkdir(parents=True, exist_ok=True)
        (shared / "config.json").write_text(text)

    return write


def _spec_text(text: str) -> Callable[[Path, Path], None]:
    def write(project: Path, _base: Path) -> None:
        (project / "shipyard.toml").write_text(text)

    return write


BAD_INPUTS = (
    BadInput(
        "nginx directives through `domains` (`;` and a location)",
        top='domains = ["a.example.com; location /x { return 200 pwned; }"]',
    ),
    BadInput("a newline in `domains`", top='domains = ["a.example.com\\nlocation /x {}"]'),
    BadInput("a wildcard in the middle of a domain", top='domains = ["a.*.example.com"]'),
    BadInput(
        "nginx and supervisor syntax in `base_dir`",
        tables='[targets.local]\nbase_dir = "/tmp/x;}\\n[program:evil]"',
    ),
    BadInput("NUL in `release`", top='release = "flask --app flaskr init-db\\u0000"'),
    BadInput("NUL in `persistent`", top='persistent = ["data\\u0000x"]'),
    BadInput(
        "a process command with a line break (a supervisor section after it)",
        tables="[processes]\nworker = \"echo 'a\\n[program:evil]\\ncommand=/bin/sh'\"",
    ),
    BadInput(
        "NUL in the health path",
        replace=('path = "/health"', 'path = "/hea\\u0000lth"'),
    ),
    BadInput("`healthcheck.status = []`", replace=('path = "/health"', "status = []")),
    BadInput("`healthcheck.status = [999]`", replace=('path = "/health"', "status = [999]")),
    BadInput("`workers = true`", replace=("workers = 2", "workers = true")),
    BadInput('`keep = "5"` (a string)', top='keep = "5"'),
    BadInput('`tests.enabled = "yes"`', replace=("[tests]\n", '[tests]\nenabled = "yes"\n')),
    BadInput("an unknown key (a typo)", top='nmae = "flaskr"'),
    BadInput("an entry without `module:attribute`", replace=('"flaskr:create_app()"', '"flaskr"')),
    BadInput("an app name with spaces", replace=('name = "flaskr"', 'name = "my app"')),
    BadInput("a port out of range in `listen`", top='listen = "127.0.0.1:99999"'),
    BadInput(
        "a static directory outside the project",
        replace=('"/static" = "flaskr/static"', '"/static" = "../../etc"'),
    ),
    BadInput("a spec that is not TOML", prepare=_spec_text('name = "flaskr\nentry = ')),
    BadInput("`config set` of a lone KEY with nothing on stdin", argv=("config", "set", "KEY")),
    BadInput("`config set` of a lone KEY beside pairs", argv=("config", "set", "A=1", "KEY")),
    BadInput("`config set` of a name that is no variable", argv=("config", "set", "1BAD=x")),
    BadInput("`scale` to a negative count", argv=("scale", "web=-1")),
    BadInput("`scale` of a process the app does not have", argv=("scale", "nope=2")),
    BadInput("`rollback` of an app never deployed", argv=("rollback",)),
    BadInput("`deploy` to a target the spec does not have", argv=("deploy", "--target", "nope")),
    BadInput("`deploy` of a directory that does not exist", argv=("deploy", "/nonexistent/app")),
    BadInput("`state.json` holding `[]`", argv=("status",), prepare=_state("[]")),
    BadInput("a truncated `state.json`", argv=("status",), prepare=_state('{"live": "ab')),
    BadInput(
        "a truncated `config.json`",
        argv=("config", "list"),
        prepare=_config('{"FLASKR_SECRET_KEY": "ab'),
    ),
)


@dataclass
class Tried:
    what: str
    command: str
    exit_code: int
    message: str
    traceback: bool

    @property
    def ok(self) -> bool:
        return self.exit_code not in (0, 70) and not self.traceback and bool(self.message)


def first_paragraph(stderr: str) -> str:
    _, found, rest = stderr.partition("error: ")
    text = found + rest if found else stderr
    return " ".join(text.split())


def try_input(case: BadInput, work: Path) -> Tried:
    project = work / "app"
    base = work / "base"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    base.mkdir()
    spec = project / "shipyard.toml"
    text = spec.read_text()
    if case.replace:
        old, new = case.replace
        assert old in text, (case.what, old)
        text = text.replace(old, new, 1)
    if case.top:
        text = case.top + "\n" + text
    if case.tables:
        text += "\n" + case.tables + "\n"
    spec.write_text(text)
    if case.prepare:
        case.prepare(project, base)
    env = {
        **os.environ,
        "SHIPYARD_HOME": str(base),
        "SHIPYARD_CACHE": str(work / "cache"),
        "SHIPYARD_WARM": "0",
        "HOME": str(work),
        "COLUMNS": "400",
    }
    argv = [SHIPYARD, *case.argv]
    if case.argv[0] not in ("config", "scale") and "/nonexistent/app" not in case.argv:
        argv.append(str(project))
    proc = subprocess.run(
        argv,
        cwd=project,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = proc.stderr or proc.stdout
    return Tried(
        case.what,
        "shipyard " + " ".join(case.argv),
        proc.returncode,
        first_paragraph(output),
        "Traceback" in proc.stderr,
    )


def run_fault_tests(report: Path) -> int:
    env = {**os.environ, "SHIPYARD_FAULT_REPORT": str(report)}
    argv = [PYTEST, "-p", "no:cacheprovider", "-q", "-m", "fault", "tests/integration"]
    argv.append("tests/fleet")
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render(faults: list[dict[str, object]], inputs: list[Tried], tests_passed: bool) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability",
        "",
        f"Run {now} on {platform.platform()}; {os.cpu_count()} cores. Produced by "
        "`.venv/bin/python bench/reliability.py` (as root): the fault tests "
        "(`pytest -m fault tests/integration tests/fleet`) each record the cases they tried, "
        "and every bad input below is given to the program on a copy of the example. "
        "Reproduce one fault with `.venv/bin/pytest -m fault -k '<words of the test name>'`.",
        "",
        "## Faults",
        "",
        "Failed requests are counted by a request loop running through nginx during the fault "
        "and during the command after it."
        + ("" if tests_passed else " **Some fault tests failed in this run.**"),
        "",
        "| fault | target | failed requests | data lost | serving after | exit | message |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in faults:
        failed = row.get("failed_requests")
        requests = row.get("requests")
        counted = "not counted" if failed is None else f"{failed}"
        if failed is not None and requests is not None:
            counted += f" of {requests}"
        message = str(row.get("message", ""))
        lines.append(
            f"| {cell(row['case'])} | {cell(row.get('target', ''))} | {counted} | "
            f"{cell(row.get('data_lost', ''))} | {cell(row.get('serving_after', ''))} | "
            f"{row.get('exit_code')} | {cell(message[:220])}{'…' if len(message) > 220 else ''} |"
        )
    lines += [
        "",
        "## Bad input",
        "",
        "Each must give a clear error: exit 1 or 2 (never 0, never 70), no traceback.",
        "",
        "| input | command | exit | message |",
        "|---|---|---|---|",
    ]
    for tried in inputs:
        mark = "" if tried.ok else " **(not handled)**"
        message = tried.message
        short = message[:200] + ("…" if len(message) > 200 else "")
        lines.append(
            f"| {cell(tried.what)}{mark} | `{cell(tried.command)}` | {tried.exit_code} | "
            f"{cell(short)} |"
        )
    return "\n".join(lines) + "\n"


def write(text: str) -> None:
    notes = ""
    if OUTPUT.exists():
        old = OUTPUT.read_text()
        if HAND_NOTES in old:
            notes = "\n" + old[old.index(HAND_NOTES) :]
    OUTPUT.write_text(text + notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs-only", action="store_true", help="skip the fault tests")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sy-reliability-") as tmp:
        work = Path(tmp)
        inputs = [try_input(case, work / "input") for case in BAD_INPUTS]
        faults: list[dict[str, object]] = []
        tests_passed = True
        if not args.inputs_only:
            report = work / "faults.jsonl"
            tests_passed = run_fault_tests(report) == 0
            if report.exists():
                faults = [json.loads(line) for line in report.read_text().splitlines()]
    write(render(faults, inputs, tests_passed))
    bad = [tried for tried in inputs if not tried.ok]
    for tried in bad:
        print(f"not handled: {tried.what}: exit {tried.exit_code}: {tried.message[:200]}")
    print(f"wrote {OUTPUT.relative_to(ROOT)}: {len(faults)} faults, {len(inputs)} bad inputs")
    return 0 if tests_passed and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
