"""The example app as a project with an ssh target named prod, pointed at a test fleet."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from netns import Fleet

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "flask-factory"
SHIPYARD = str(Path(sys.executable).with_name("shipyard"))  # the venv running the tests


@dataclass
class Project:
    """The example app with an ssh target named prod pointing at a test fleet."""

    path: Path
    fleet: Fleet
    env: dict[str, str]

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [SHIPYARD, *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.cli(*args)
        assert proc.returncode == 0, f"shipyard {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr
        return proc

    def set_greeting(self, text: str) -> None:
        views = self.path / "flaskr" / "views.py"
        views.write_text(
            re.sub(r'^GREETING = ".*"$', f'GREETING = "{text}"', views.read_text(), flags=re.M)
        )


def make_project(tmp: Path, fleet: Fleet, cache: Path, **target: str) -> Project:
    path = tmp / "app"
    shutil.copytree(
        EXAMPLE, path, ignore=shutil.ignore_patterns("instance", "__pycache__", ".pytest_cache")
    )
    hosts = ", ".join(f'"{h.name}"' for h in fleet.web)
    lines = [
        "",
        "[targets.prod]",
        f"hosts = [{hosts}]",
        f'base_dir = "{fleet.root}/{{host}}"',
        f'ssh_config = "{fleet.ssh_config}"',
        # the example keeps its data in SQLite on each host: set it up on each
        'release_on = "each"',
    ]
    if fleet.lb is not None:
        lines.append(f'lb = "{fleet.lb.name}"')
    lines += [f"{key} = {value}" for key, value in target.items()]
    spec = path / "shipyard.toml"
    spec.write_text(spec.read_text() + "\n".join(lines) + "\n")
    env = {**os.environ, "SHIPYARD_CACHE": str(cache), "HOME": str(tmp)}
    return Project(path, fleet, env)
