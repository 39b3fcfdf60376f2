"""End to end: a Heroku-style app (requirements.txt, app.py, a Procfile with a worker) goes
through `init --yes` and `deploy`; `scale` runs more workers; a worker that crashes at start
fails the deploy with the old release serving; `status` fails while a worker is down."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

HEROKU_APP = {
    "requirements.txt": "flask>=3,<4\ngunicorn\n",
    "Procfile": "# as on Heroku\nweb: gunicorn app:app\nworker: python worker.py\n",
    "app.py": """\
from flask import Flask

app = Flask(__name__)
VERSION = "one"


@app.get("/")
def index() -> str:
    return VERSION
""",
    "worker.py": """\
import os
import time
from pathlib import Path

beat = Path(f"heartbeat-{os.getpid()}")
while True:
    beat.write_text(str(time.time()))
    time.sleep(0.5)
""",
}
CRASHING_WORKER = "import os\n\nprint('connecting to the broker')\nos.environ['BROKER_URL']\n"


def _status(d: Deployment, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, str]]:
    code, out, _ = d.cli("status", "--json", str(d.project), capsys=capsys)
    host = json.loads(out)["hosts"][0]
    return code, {p["name"]: p["state"] for p in host["processes"] if p["name"] != "nginx"}


def _pid(d: Deployment, capsys: pytest.CaptureFixture[str], name: str) -> int:
    _, out, _ = d.cli("status", "--json", str(d.project), capsys=capsys)
    processes = json.loads(out)["hosts"][0]["processes"]
    return int(next(p["pid"] for p in processes if p["name"] == name))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_a_procfile_app_with_a_worker(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    d = bare_deployment
    for name, text in HEROKU_APP.items():
        (d.project / name).parent.mkdir(parents=True, exist_ok=True)
        (d.project / name).write_text(text)
    code, out, err = d.cli("init", "--yes", str(d.project), capsys=capsys)
    assert code == 0, err
    assert "Procfile: web: took entry app:app, server gunicorn" in out + err
    assert "Procfile: worker: took as processes.worker" in out + err
    spec = d.project / "shipyard.toml"
    spec.write_text(f'listen = "127.0.0.1:{d.port}"\n' + spec.read_text())

    code, _, err = d.cli("deploy", str(d.project), capsys=capsys)
    assert code == 0, err
    assert d.get("/")[:2] == (200, "one")
    code, states = _status(d, capsys)
    slot = next(name for name in states if "-web-" in name).rsplit("-", 1)[1]
    assert code == 0 and states == {f"app-web-{slot}": "RUNNING", f"app-worker-{slot}": "RUNNING"}

    code, out, err = d.cli("scale", "worker=2", "--dir", str(d.project), capsys=capsys)
    assert code == 0, err
    assert "scale worker=2 on local" in out
    code, states = _status(d, capsys)
    workers = {f"app-worker-{slot}", f"app-worker-1-{slot}"}
    assert code == 0 and {n: s for n, s in states.items() if "worker" in n} == dict.fromkeys(
        workers, "RUNNING"
    )
    pids = {_pid(d, capsys, name) for name in workers}
    deadline = time.monotonic() + 10
    while {int(p.name.split("-")[1]) for p in d.base.rglob("heartbeat-*")} < pids:
        assert time.monotonic() < deadline, "the two workers did not both beat"
        time.sleep(0.2)

    # web=N: the app server's workers, on a fresh slot; the workers' scale goes with it
    code, out, err = d.cli("scale", "web=3", "--dir", str(d.project), capsys=capsys)
    assert code == 0, err
    assert "restarted" in out
    code, states = _status(d, capsys)
    old, slot = slot, next(name for name in states if "-web-" in name).rsplit("-", 1)[1]
    assert code == 0 and slot != old and len(states) == 3
    master = _pid(d, capsys, f"app-web-{slot}")
    assert len(_children(master)) == 3

    # a release whose worker crashes at start: nothing switched, the old one serves
    (d.project / "app.py").write_text(HEROKU_APP["app.py"].replace('"one"', '"two"'))
    (d.project / "worker.py").write_text(CRASHING_WORKER)
    code, out, err = d.cli("deploy", str(d.project), capsys=capsys)
    assert code == 1
    assert "process worker did not stay up" in err
    assert "KeyError: 'BROKER_URL'" in err and "connecting to the broker" in err
    assert d.get("/")[:2] == (200, "one")
    code, states = _status(d, capsys)
    assert code == 0 and len(states) == 3  # the scale survived the failed deploy

    # a worker of the live release that breaks and dies: status fails until it is back
    live = json.loads(d.cli("status", "--json", str(d.project), capsys=capsys)[1])
    release = live["hosts"][0]["release"]
    tree = d.app("app").workdir(release, True)
    (tree / "worker.py").write_text(CRASHING_WORKER)
    os.kill(_pid(d, capsys, f"app-worker-1-{slot}"), signal.SIGKILL)
    # supervisord retries it (STARTING counts as up) with growing pauses: on a loaded machine
    # each try's start-up is slow too
    deadline = time.monotonic() + 60
    while (found := _status(d, capsys))[0] == 0:
        assert time.monotonic() < deadline, "status stayed healthy with a worker down"
        time.sleep(0.3)
    code, out, _ = d.cli("status", str(d.project), capsys=capsys)
    assert code == 1 and "processes down" in out and f"app-worker-1-{slot}" in out
    assert found[1][f"app-worker-{slot}"] == "RUNNING"
    assert d.get("/")[:2] == (200, "one")
