"""What `init` takes from a Heroku-style Procfile: the web server's entry and workers, the
extra processes, and the release command (or setup, for one that creates the database)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from shipyard.project.commands import INIT_DB_NAMES
from shipyard.spec.model import ENTRY_RE, PROCESS_NAME_RE

LINE_RE = re.compile(r"^([A-Za-z0-9_-]+)\s*:\s*(.*)$")
ASGI_WORKERS = ("uvicorn.workers.UvicornWorker", "uvicorn_worker.UvicornWorker")
AIOHTTP_WORKERS = (
    "aiohttp.GunicornWebWorker",
    "aiohttp.GunicornUVLoopWebWorker",
    "aiohttp.worker.GunicornWebWorker",
    "aiohttp.worker.GunicornUVLoopWebWorker",
)
CANNOT_USE = (
    "shipyard runs the app server itself, on a unix socket behind nginx, and needs the app "
    "object ('module:app') to do it"
)


@dataclass(frozen=True)
class Web:
    entry: str = ""
    server: str = ""  # gunicorn | uvicorn | uwsgi | aiohttp, or "" when the line names none
    kind: str = ""  # wsgi | asgi | aiohttp
    workers: int = 0


@dataclass(frozen=True)
class Procfile:
    web: Web | None = None
    processes: dict[str, str] = field(default_factory=dict)
    release: str = ""
    setup: str = ""
    notes: list[str] = field(default_factory=list)  # what was taken, and what was not


def parse_lines(text: str) -> list[tuple[str, str]]:
    """(type, command) pairs of a Procfile, comments and blank lines skipped."""
    pairs = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = LINE_RE.match(line)
        if match and match.group(2).strip():
            pairs.append((match.group(1), match.group(2).strip()))
    return pairs


def read(project: Path) -> Procfile | None:
    path = project / "Procfile"
    if not path.is_file():
        return None
    return interpret(path.read_text(encoding="utf-8", errors="replace"))


def interpret(text: str) -> Procfile:
    web: Web | None = None
    processes: dict[str, str] = {}
    release = setup = ""
    notes: list[str] = []
    for kind, command in parse_lines(text):
        if kind == "web":
            web = web_command(command)
            if web.entry:
                took = f"entry {web.entry}, server {web.server}"
                took += f", {web.workers} workers" if web.workers else ""
                notes.append(f"Procfile: web: took {took}")
            else:
                notes.append(
                    f"Procfile: web: `{command}` cannot be used as is: {CANNOT_USE}; the entry "
                    "detected in the code is used instead"
                )
        elif kind == "release":
            if _creates_database(command):
                setup = command
                notes.append(
                    f"Procfile: release: `{command}` creates the database: proposed as `setup` "
                    "(once, on the first deploy), not as `release` (every deploy)"
                )
            else:
                release = command
                notes.append(f"Procfile: release: took `{command}` as `release`")
        else:
            name = kind.lower().replace("-", "_")
            if not PROCESS_NAME_RE.match(name) or name in ("web", "release"):
                notes.append(f"Procfile: {kind}: not a usable process name, skipped")
                continue
            processes[name] = command
            notes.append(f"Procfile: {kind}: took as processes.{name}")
            if "$" in command:
                notes.append(
                    f"Procfile: {kind}: runs without a shell, so `$` variables are not "
                    "expanded: wrap it in sh -c '...' if it needs them"
                )
    return Procfile(web, processes, release, setup, notes)


def web_command(command: str) -> Web:
    """The server, entry and workers a Procfile's web line names, where it names them."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return Web()
    while argv and re.match(r"^[A-Za-z_]\w*=", argv[0]):  # FOO=bar gunicorn ...
        argv = argv[1:]
    if argv[:2] in (["python", "-m"], ["python3", "-m"]):
        argv = argv[2:]
    if not argv:
        return Web()
    program = Path(argv[0]).name
    args = argv[1:]
    if program == "gunicorn":
        worker_class = _option(args, "-k", "--worker-class")
        if worker_class in AIOHTTP_WORKERS:
            return _web(args, "aiohttp", "aiohttp")
        asgi = worker_class in ASGI_WORKERS
        return _web(args, "uvicorn" if asgi else "gunicorn", "asgi" if asgi else "wsgi")
    if program == "uvicorn":
        web = _web(args, "uvicorn", "asgi")
        if web.entry and "--factory" in args:
            return Web(web.entry + "()", web.server, web.kind, web.workers)
        return web
    if program == "uwsgi":
        module = _option(args, "--module", "-w") or ""
        entry = module if ENTRY_RE.match(module) else ""
        workers = _option(args, "--processes", "-p")
        return Web(entry, "uwsgi", "wsgi", int(workers) if workers and workers.isdigit() else 0)
    return Web()


def _web(args: list[str], server: str, kind: str) -> Web:
    entry = next((a for a in args if not a.startswith("-") and ENTRY_RE.match(a)), "")
    workers = _option(args, "-w", "--workers")
    return Web(entry, server, kind, int(workers) if workers and workers.isdigit() else 0)


def _option(args: list[str], short: str, long: str) -> str | None:
    """An option's value: `-w 3`, `-w3`, `--workers 3` or `--workers=3`."""
    for i, arg in enumerate(args):
        if arg in (short, long):
            return args[i + 1] if i + 1 < len(args) else None
        if arg.startswith(long + "="):
            return arg.split("=", 1)[1]
        if short and arg.startswith(short) and len(arg) > len(short) and not arg.startswith("--"):
            return arg[len(short) :]
    return None


def _creates_database(command: str) -> bool:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    return any(re.sub(r"[-_]", "", w.lower()) in INIT_DB_NAMES for w in words)
