"""End to end: stop/start/restart, init then deploy, and logs, on real nginx and supervisord."""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

GREETING = "Hello from flaskr"

# Appended to the example's views: a route whose only job is to print to the app's output.
ECHO_ROUTE = """

@bp.get("/echo/<word>")
def echo(word: str) -> Response:
    print(f"echo {word}", flush=True)
    return Response(word, mimetype="text/plain")
"""


LABELLED = re.compile(r"^\[(web-blue|web-green|access|error)\] ")


def _status(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    code, out, err = deployment.cli("status", str(deployment.project), "--json", capsys=capsys)
    report: dict[str, Any] = json.loads(out)
    assert code == (0 if report["healthy"] else 1), err  # scripts can test the exit code
    assert [host["host"] for host in report["hosts"]] == ["local"]
    return {**report["hosts"][0], "healthy": report["healthy"]}


def _process_states(report: dict[str, Any]) -> dict[str, str]:
    return {proc["name"]: proc["state"] for proc in report["processes"]}


def test_stop_start_and_restart_keep_the_release(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    status, body, release = deployment.get("/version")
    assert status == 200 and body == GREETING and release
    slot = _status(deployment, capsys)["slot"]
    assert slot in ("blue", "green")
    app = deployment.app("flaskr")
    socket = app.socket(slot)
    assert socket.is_socket()

    code, out, err = deployment.cli("stop", project, capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"stopped flaskr-web-{slot}"
    status, body, header = deployment.get("/version")
    # nginx still answers, with its own error page: gunicorn removed its socket on exit
    assert status == 502
    assert "<title>502 Bad Gateway</title>" in body and GREETING not in body
    assert header == release  # the site adds the header `always`, to error pages too
    assert not socket.exists()
    assert f"connect() to unix:{socket} failed (2: No such file or directory)" in (
        app.error_log.read_text()
    )
    report = _status(deployment, capsys)
    assert report["healthy"] is False and report["health"].startswith("HTTP 502")
    assert report["release"] == release and report["slot"] == slot
    states = _process_states(report)
    # nginx counts as started once up past its bind() retries (a crash loop never does)
    assert states.pop("nginx") in ("STARTING", "RUNNING")
    assert states == {f"flaskr-web-{slot}": "STOPPED"}

    code, out, err = deployment.cli("start", project, capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"started flaskr-web-{slot}"
    # `start` returns once the release answers through nginx: the very next request is served
    assert deployment.get("/version") == (200, GREETING, release)
    report = _status(deployment, capsys)
    assert report["healthy"] is True and report["serving_release"] == release
    old_pid = next(p["pid"] for p in report["processes"] if p["name"] == f"flaskr-web-{slot}")
    assert old_pid > 0

    with deployment.under_load() as load:
        load.wait_for_more(20)
        code, out, err = deployment.cli("restart", project, capsys=capsys)
        load.wait_for_more(50)  # and some more on the restarted server
    assert code == 0, err
    other = "green" if slot == "blue" else "blue"
    assert out.strip() == f"release {release} restarted on slot {other}"
    assert load.failed == [], load.failed[:5]
    assert load.ok >= 70
    assert load.bodies == {GREETING}
    assert load.releases == {release}
    assert deployment.get("/version") == (200, GREETING, release)
    report = _status(deployment, capsys)
    assert report["release"] == release and report["slot"] == other
    assert report["healthy"] is True and report["serving_release"] == release
    new = next(p for p in report["processes"] if p["name"] == f"flaskr-web-{other}")
    assert new["state"] in ("STARTING", "RUNNING") and new["pid"] not in (0, old_pid)


def _set_listen(text: str, port: int) -> str:
    """Activate `listen` in a generated spec: replace its (commented) line, or add one on top."""
    line = f'listen = "127.0.0.1:{port}"'
    new, count = re.subn(r"^#?\s*listen\s*=.*$", line, text, count=1, flags=re.M)
    return new if count else f"{line}\n{text}"


def test_init_yes_then_deploy_and_init_refuses_to_overwrite(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    spec = deployment.project / "shipyard.toml"
    spec.unlink()

    code, out, err = deployment.cli("init", "--yes", project, capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"wrote {spec.resolve()}"
    generated = spec.read_text()
    assert re.search(r'^entry = "flaskr:create_app\(\)"$', generated, re.M)
    assert not re.search(r"^listen\s*=", generated, re.M)  # commented: the default port
    spec.write_text(_set_listen(generated, deployment.port))
    edited = spec.read_bytes()

    code, out, err = deployment.cli("init", "--yes", project, capsys=capsys)
    assert code == 2
    assert f"{spec.resolve()} exists already" in err and "--force" in err
    assert "wrote" not in out
    assert spec.read_bytes() == edited

    code, out, err = deployment.cli("deploy", project, capsys=capsys)
    assert code == 0, err
    assert out.strip() == f"http://127.0.0.1:{deployment.port}/"
    assert re.search(r"^✓ test \d", err, re.M) and "passed" in err  # the test gate ran
    status, body, release = deployment.get("/")
    assert status == 200 and GREETING in body
    assert release and release == _status(deployment, capsys)["release"]

    code, out, err = deployment.cli("init", "--yes", "--force", project, capsys=capsys)
    assert code == 0, err
    assert spec.read_text() == generated  # a fresh one: the edited listen line is gone


def test_logs_show_app_output_and_access_lines(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    views = deployment.project / "flaskr" / "views.py"
    views.write_text(views.read_text() + ECHO_ROUTE)
    code, _, err = deployment.cli("deploy", project, "--skip-tests", capsys=capsys)
    assert code == 0, err
    slot = _status(deployment, capsys)["slot"]
    token = uuid.uuid4().hex[:12]
    words = [f"{token}-{i}" for i in range(3)]
    for word in words:
        assert deployment.get(f"/echo/{word}")[:2] == (200, word)

    # Both logs lag the response: supervisord copies the app's output into its file, and
    # nginx writes the access line once the response has gone out.
    deadline = time.monotonic() + 10
    while True:
        code, out, err = deployment.cli("logs", project, capsys=capsys)
        assert code == 0, err
        written = all(f"echo {w}" in out and f"GET /echo/{w} " in out for w in words)
        if written or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lines = out.splitlines()
    assert all(LABELLED.match(line) for line in lines), out
    for word in words:
        assert f"[web-{slot}] echo {word}" in lines
        assert any(
            line.startswith("[access] 127.0.0.1 - - [")
            and f'"GET /echo/{word} HTTP/1.1" 200 ' in line
            for line in lines
        ), out
    socket = deployment.app("flaskr").socket(slot)
    assert any(
        line.startswith(f"[web-{slot}] ") and f"Listening at: unix:{socket}" in line
        for line in lines
    )

    code, out, err = deployment.cli("logs", project, "--process", "web", capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(re.match(r"^\[web-(blue|green)\] ", line) for line in lines), out
    assert [line for line in lines if token in line] == [f"[web-{slot}] echo {w}" for w in words]

    code, out, err = deployment.cli("logs", project, "--process", "access", capsys=capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines and all(line.startswith("[access] ") for line in lines), out
    assert sum(f'"GET /echo/{token}-' in line for line in lines) == len(words)


def test_a_taken_port_fails_fast_with_nginx_s_reason(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", deployment.port))
        squatter.listen()
        code, _out, err = deployment.cli(
            "deploy", str(deployment.project), "--skip-tests", capsys=capsys
        )
    assert code == 1
    assert "bind() to 127.0.0.1:" in err and "Address already in use" in err, err
    assert f"(held by pid {os.getpid()} (" in err, err  # the process that holds the port
    assert "Traceback" not in err
    # once the port is free, the same deploy goes through
    code, _out, err = deployment.cli(
        "deploy", str(deployment.project), "--skip-tests", capsys=capsys
    )
    assert code == 0, err
    assert deployment.get("/")[0] == 200


def test_build_prints_the_id_and_an_unchanged_tree_is_not_rebuilt(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    project = str(deployment.project)
    code, first, err = deployment.cli("build", project, capsys=capsys)
    assert code == 0, err
    assert re.fullmatch(r"[0-9a-f]{12}\n", first)
    code, again, err = deployment.cli("build", project, capsys=capsys)
    assert code == 0 and again == first and "(unchanged)" in err
    deployment.set_greeting("changed")
    code, changed, err = deployment.cli("build", project, capsys=capsys)
    assert code == 0 and changed != first and "(unchanged)" not in err
