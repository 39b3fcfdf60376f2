"""Fleets end to end: real sshd in network namespaces, the real CLI, nginx on every host.

One module-scoped fleet (web1..web3 behind lb1) carries the happy path in order: provision
twice, deploy, a rolling redeploy under load through the lb, rollback, status and logs. Tests
that break a host (sshd dying mid-deploy, a changed host key) get hosts of their own.
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from netns import Fleet, FleetFactory
from project import EXAMPLE, SHIPYARD, Project, make_project

pytestmark = pytest.mark.slow


def get(address: str, path: str = "/", port: int = 80) -> tuple[int, str, str | None]:
    conn = http.client.HTTPConnection(address, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode(), response.getheader("X-Shipyard-Release")
    finally:
        conn.close()


def greeting(body: str) -> str:
    found = re.search(r'<p class="greeting" id="greeting">(.*?)</p>', body, re.S)
    assert found, body[:500]
    return found.group(1).strip()


@dataclass
class Load:
    """Requests through the load balancer on new connections, counting every failure."""

    address: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    releases: set[str] = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, _body, release = get(self.address, "/version")
            except OSError as err:
                self.failed.append(repr(err))
                continue
            if status == 200:
                self.ok += 1
                self.releases.add(release or "")
            else:
                self.failed.append(f"HTTP {status}")
            time.sleep(0.005)


@pytest.fixture(scope="module")
def prod(fleet: Fleet, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    yield make_project(tmp_path_factory.mktemp("prod"), fleet, cache, strategy='"rolling"')


def test_provision_is_idempotent(prod: Project) -> None:
    before = prod.cli("check", "--target", "prod")
    assert before.returncode == 1
    assert "web1: is not ready: shipyard's runtime" in before.stdout, before.stdout
    assert "shipyard provision prod" in before.stderr
    planned = prod.ok("provision", "prod", "--dry-run")
    assert "web1: would install shipyard's runtime" in planned.stdout
    assert not (prod.fleet.web[0].base_dir / ".shipyard").exists()
    first = prod.ok("provision", "prod")
    for host in prod.fleet:
        assert f"{host.name}: install shipyard's runtime" in first.stdout, first.stdout
        venv = host.base_dir / ".shipyard" / "venv"
        assert (venv / "bin" / "python").is_file()
        assert not (host.base_dir / ".shipyard" / "bin" / "uv").exists()  # hosts need no uv
        # the runtime arrives installed, with its bytecode (the hosts run this Python)
        site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
        tag = sys.implementation.cache_tag
        assert (site / "site-packages" / "pydantic" / "__pycache__" / f"main.{tag}.pyc").is_file()
        # without what no host imports
        assert (site / "site-packages" / "supervisor" / "xmlrpc.py").is_file()
        assert not (site / "site-packages" / "supervisor" / "tests").exists()
    version = prod.fleet.ssh(
        prod.fleet.web[0], f"{prod.fleet.web[0].base_dir}/.shipyard/venv/bin/supervisord --version"
    )
    assert version.stdout.strip() == metadata.version("supervisor"), version
    second = prod.ok("provision", "prod")
    assert second.stdout.count("already provisioned, nothing to do") == len(list(prod.fleet))
    ready = prod.ok("check", "--target", "prod")
    assert all(f"{host.name}: ready" in ready.stdout for host in prod.fleet)


def test_deploy_to_three_web_hosts_behind_the_lb(prod: Project) -> None:
    # the agent's bytecode came with it (the hosts run this Python): valid, so not rewritten
    tag = sys.implementation.cache_tag
    pyc = prod.fleet.web[0].base_dir / f".shipyard/lib/shipyard/host/__pycache__/agent.{tag}.pyc"
    sent = pyc.stat().st_mtime_ns
    done = prod.ok("deploy", "--target", "prod")
    assert pyc.stat().st_mtime_ns == sent
    lb = prod.fleet.lb
    assert lb is not None
    assert done.stdout.strip() == f"http://{lb.address}:80/"
    status, body, release = get(lb.address)
    assert status == 200 and greeting(body) == "Hello from flaskr"
    assert release and re.fullmatch(r"[0-9a-f]{12}", release)
    # every web host serves that release through its own nginx, on its own address
    for host in prod.fleet.web:
        assert get(host.address, "/version")[2] == release
        assert (host.base_dir / "flaskr" / "current").resolve().name == release
    # static files are served at the edge, by the lb itself
    css = get(lb.address, "/static/style.css")
    assert css[0] == 200 and css[1] == (EXAMPLE / "flaskr/static/style.css").read_text()
    # the app runs as the app user provision made, not root; its env file is its own, 0600
    user = pwd.getpwnam("shipyard")
    for host in prod.fleet.web:
        owners = {
            Path(f"/proc/{pid}").stat().st_uid
            for pid in host.pids()
            if b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()
        }
        assert owners == {user.pw_uid}, host.name
        env_files = list((host.base_dir / "flaskr" / "shared").glob("env.*"))
        assert env_files and all(
            f.stat().st_uid == user.pw_uid and f.stat().st_mode & 0o777 == 0o600 for f in env_files
        )
    # each host set up its own database (release_on = "each"), once, for this release
    for host in prod.fleet.web:
        setup = json.loads((host.base_dir / "flaskr" / "shared" / "setup.json").read_text())
        assert (setup["how"], setup["release"]) == ("ran", release), host.name
    # the same generated secret on every host (sessions must survive the lb's choice)
    keys = {
        (host.base_dir / "flaskr" / "shared" / "config.json").read_text() for host in prod.fleet.web
    }
    assert len(keys) == 1


def test_a_dry_run_plans_every_host_and_changes_nothing(prod: Project) -> None:
    lb = prod.fleet.lb
    assert lb is not None
    before = get(lb.address)[2]
    states = {h.name: (h.base_dir / "flaskr" / "state.json").read_bytes() for h in prod.fleet.web}
    prod.set_greeting("Hello from a planned release")
    planned = prod.ok("deploy", "--target", "prod", "--dry-run")
    for host in prod.fleet.web:
        assert f"deploy plan for flaskr on {host.name}" in planned.stdout, planned.stdout
        site = host.base_dir / ".shipyard" / "nginx" / "sites" / "flaskr.conf"
        assert f"~ {site}" in planned.stdout  # the new slot's site file, as a diff
    assert f"deploy plan for flaskr on {lb.name}" in planned.stdout
    # secrets are masked on both sides of the env file's diff
    secret = json.loads((prod.fleet.web[0].base_dir / "flaskr/shared/config.json").read_text())
    assert secret["FLASKR_SECRET_KEY"] not in planned.stdout
    assert "FLASKR_SECRET_KEY='***'" in planned.stdout
    assert get(lb.address)[2] == before
    for host in prod.fleet.web:
        assert (host.base_dir / "flaskr" / "state.json").read_bytes() == states[host.name]


def test_rolling_redeploy_under_load_fails_no_request(prod: Project, cache: Path) -> None:
    lb = prod.fleet.lb
    assert lb is not None
    before = get(lb.address)[2]
    prod.set_greeting("Hello from the rolling release")
    load = Load(lb.address)
    workers = [threading.Thread(target=load.run) for _ in range(3)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        done = prod.ok("deploy", "--target", "prod")
        time.sleep(0.5)
    finally:
        load.stop.set()
        for worker in workers:
            worker.join()
    assert load.failed == [], load.failed[:10]
    assert load.ok > 50
    after = get(lb.address)
    assert after[2] != before and greeting(after[1]) == "Hello from the rolling release"
    assert {before, after[2]} <= load.releases
    # a code-only change sends each host the app wheel and the manifest, nothing else: the
    # artifact's other files are copied from the host's previous artifact
    found = re.search(r"sent (\d+) bytes", done.stderr)
    assert found, done.stderr
    new = cache / "artifacts" / str(after[2])
    wheel = next((new / "app").glob("*.whl")).stat().st_size
    manifest = (new / "manifest.json").stat().st_size
    assert int(found.group(1)) == len(prod.fleet.web) * (wheel + manifest), done.stderr
    for host in prod.fleet.web:  # and the artifact is whole there
        there = host.base_dir / ".shipyard" / "artifacts" / str(after[2])
        assert sorted(p.relative_to(there) for p in there.rglob("*") if p.is_file()) == sorted(
            p.relative_to(new) for p in new.rglob("*") if p.is_file()
        )


def test_rollback_status_releases_and_logs(prod: Project) -> None:
    lb = prod.fleet.lb
    assert lb is not None
    new = get(lb.address)[2]
    back = prod.ok("rollback", "--target", "prod")
    old = get(lb.address)
    assert old[2] != new and greeting(old[1]) == "Hello from flaskr", back.stdout
    for host in prod.fleet.web:
        assert get(host.address, "/version")[2] == old[2]
    status = prod.ok("status", "--target", "prod", "--json")
    rows = {row["host"]: row for row in __import__("json").loads(status.stdout)["hosts"]}
    assert all(
        rows[h.name]["healthy"] and rows[h.name]["release"] == old[2] for h in prod.fleet.web
    )
    listed = prod.ok("releases", "--target", "prod", "--json")
    assert new and old[2] and new in listed.stdout and old[2] in listed.stdout
    # freeze: the live (rolled back) release's pins, as each host's lock has them
    frozen = prod.ok("freeze", "--target", "prod").stdout.splitlines()
    assert frozen[0] == f"# the live release {old[2]} (shipyard freeze)"
    for host in prod.fleet.web:
        lock = host.base_dir / "flaskr" / "releases" / str(old[2]) / "requirements.lock"
        assert frozen[1:] == sorted(line for line in lock.read_text().splitlines() if line)
    logs = prod.ok("logs", "--target", "prod", "--process", "access", "-n", "5")
    assert {line.split()[0] for line in logs.stdout.splitlines()} == {
        h.name for h in prod.fleet.web
    }
    # the setup ran with the first release only: not with the rolling redeploy, nor since
    for host in prod.fleet.web:
        setup = json.loads((host.base_dir / "flaskr" / "shared" / "setup.json").read_text())
        assert (setup["how"], setup["release"]) == ("ran", old[2]), host.name
    # a scale is set on every host, kept beside the config, and shown by status
    scaled = prod.ok("scale", "--target", "prod", "web=3")
    assert "scale web=3 on" in scaled.stdout and "restarted" in scaled.stdout, scaled.stdout
    status = prod.ok("status", "--target", "prod", "--json")
    rows = {row["host"]: row for row in json.loads(status.stdout)["hosts"]}
    for host in prod.fleet.web:
        assert rows[host.name]["healthy"] and rows[host.name]["scale"] == {"web": 3}, host.name
        assert json.loads((host.base_dir / "flaskr" / "shared" / "scale.json").read_text()) == {
            "web": 3
        }


def test_config_set_and_run_reach_every_host(prod: Project) -> None:
    lb = prod.fleet.lb
    assert lb is not None
    load = Load(lb.address)
    worker = threading.Thread(target=load.run)
    worker.start()
    try:
        prod.ok("config", "set", "--target", "prod", "FLASKR_GREETING_SOURCE=fleet config")
    finally:
        load.stop.set()
        worker.join()
    assert load.failed == [] and load.ok > 0
    for host in prod.fleet.web:
        shown = prod.ok(
            "run", "--target", "prod", "--host", host.name, "--", "printenv",
            "FLASKR_GREETING_SOURCE", "FLASK_APP",
        )  # fmt: skip
        assert shown.stdout.split("\n")[:2] == ["fleet config", "flaskr:create_app()"], shown
    listed = prod.ok("config", "list", "--target", "prod")
    assert "FLASKR_GREETING_SOURCE=***" in listed.stdout and "fleet config" not in listed.stdout
    bad = prod.cli("run", "--target", "prod", "--host", "nope", "--", "true")
    assert bad.returncode == 2 and "web1" in bad.stderr


def test_destroy_takes_the_app_off_every_host_and_the_lb(prod: Project) -> None:
    lb = prod.fleet.lb
    assert lb is not None
    assert get(lb.address)[0] == 200
    done = prod.ok("destroy", "--target", "prod", "--yes")
    assert "data kept" in done.stdout
    with pytest.raises(OSError):  # the lb serves no site any more: nothing listens
        get(lb.address)
    assert not (lb.base_dir / ".shipyard" / "nginx" / "sites" / "flaskr.conf").exists()
    for host in prod.fleet.web:
        app = host.base_dir / "flaskr"
        assert not (app / "releases").exists() and not (app / "current").exists()
        assert (app / "shared" / "var").is_dir()  # data is kept without --purge
        assert (app / "shared" / "setup.json").is_file()  # and so is its setup: not run again
        assert not any(
            b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in host.pids()
        )


def test_host_key_mismatch_is_refused(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=1, lb=False)
    project = make_project(tmp_path, fleet, cache)
    fleet.web[0].replace_host_key()
    refused = project.cli("provision", "prod")
    assert refused.returncode == 1
    assert "cannot reach the host over SSH" in refused.stderr
    assert "known_hosts" in refused.stderr and "Traceback" not in refused.stderr
    assert not (fleet.web[0].base_dir / ".shipyard").exists()


def test_sshd_dying_mid_deploy_is_reported_and_a_rerun_completes(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=2, lb=False)
    project = make_project(tmp_path, fleet, cache)
    project.ok("provision", "prod")
    first = project.ok("deploy", "--target", "prod")
    serving = get(fleet.web[0].address)[2]
    assert first.returncode == 0 and serving
    # a release command slow enough to cut web2's connection while it runs
    spec = project.path / "shipyard.toml"
    spec.write_text(
        "release = \"sh -c 'flask --app flaskr init-db && sleep 4'\"\n" + spec.read_text()
    )
    project.set_greeting("Hello from the second release")
    deploy = subprocess.Popen(
        [SHIPYARD, "deploy", "--target", "prod"],
        cwd=project.path,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = fleet.web[1]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and deploy.poll() is None:
        running = subprocess.run(
            ["ip", "netns", "pids", victim.namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        cmdlines = []
        for pid in running:
            try:
                cmdlines.append(Path(f"/proc/{pid}/cmdline").read_bytes())
            except OSError:
                continue
        if any(b"sleep\x004" in line for line in cmdlines):
            break
        time.sleep(0.05)
    victim.stop_sshd()
    out, err = deploy.communicate(timeout=120)
    assert deploy.returncode == 1, out + err
    assert "web2" in err and "Traceback" not in err
    assert "Nothing was switched anywhere" in err
    # both hosts still serve the release that was live
    assert get(fleet.web[0].address)[2] == serving
    assert get(victim.address)[2] == serving
    victim.start_sshd()
    rerun = project.ok("deploy", "--target", "prod")
    for host in fleet.web:
        _status, body, release = get(host.address)
        assert release != serving and greeting(body) == "Hello from the second release"
    assert rerun.returncode == 0


def test_the_agent_stays_resident_and_retires_for_new_code(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=1, lb=False)
    project = make_project(tmp_path, fleet, cache)
    host = fleet.web[0]
    runtime = host.base_dir / ".shipyard"
    log = runtime / "logs" / "agent.log"

    def running(pid: int) -> bool:  # a zombie is not: this machine's init may not reap
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def agents() -> list[int]:
        return [
            pid
            for pid in host.pids()
            if b"shipyard.host.agent" in Path(f"/proc/{pid}/cmdline").read_bytes() and running(pid)
        ]

    def served() -> int:
        return log.read_text().count("agent: session") if log.exists() else 0

    def resident() -> int:
        """The one agent left on the host once a command ended, serving its socket."""
        deadline = time.monotonic() + 10
        while not (runtime / "agent.sock").is_socket() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (runtime / "agent.sock").stat().st_mode & 0o777 == 0o600
        found = agents()
        assert len(found) == 1, found
        return found[0]

    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod")
    first = resident()
    before = served()
    project.ok("status", "--target", "prod")
    project.set_greeting("Hello again")
    # a file of the live artifact altered on the host: it is sent again rather than reused
    live = get(host.address)[2]
    style = runtime / "artifacts" / str(live) / "static" / "0-static" / "style.css"
    original_style = style.read_bytes()
    style.write_bytes(b"body { color: red }\n")
    project.ok("deploy", "--target", "prod")
    assert resident() == first and served() >= before + 2
    _, body, release = get(host.address)
    assert greeting(body) == "Hello again" and release != live
    assert (
        runtime / "artifacts" / str(release) / style.relative_to(style.parents[2])
    ).read_bytes() == original_style

    # a session the resident cannot set up is left to a full agent, which says why
    spec = project.path / "shipyard.toml"
    original_spec = spec.read_text()
    spec.write_text(original_spec + 'app_user = "nosuchuser"\n')
    refused = project.cli("status", "--target", "prod", "--json")
    assert refused.returncode != 0 and "nosuchuser" in refused.stdout + refused.stderr
    assert "lost the connection" not in refused.stdout + refused.stderr, refused.stdout
    spec.write_text(original_spec)
    assert resident() == first

    # the host's agent code is not the deploying machine's: the resident retires, the lib is
    # synced again, and a new agent serves and stays
    (runtime / "lib" / ".shipyard-lib").write_text("an older shipyard\n")
    project.ok("status", "--target", "prod")
    second = resident()
    assert second != first and not running(first), log.read_text()
    assert "retiring" in log.read_text()

    # agent_linger = 0: the agent exits with each command
    os.kill(second, signal.SIGTERM)
    spec.write_text(spec.read_text() + "agent_linger = 0\n")
    project.ok("status", "--target", "prod")
    assert agents() == []


def test_a_proxyjump_in_the_ssh_config_is_honoured(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=2, lb=False)
    target, jump = fleet.web
    project = make_project(tmp_path, fleet, cache)
    spec = project.path / "shipyard.toml"
    spec.write_text(
        spec.read_text().replace(
            f'hosts = ["{target.name}", "{jump.name}"]', f'hosts = ["{target.name}"]'
        )
    )
    # the first match wins in ssh_config: web1 is reached through web2
    fleet.ssh_config.write_text(
        f"Host {target.name}\n    ProxyJump {jump.name}\n\n" + fleet.ssh_config.read_text()
    )
    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod")
    assert get(target.address)[0] == 200 and not (jump.base_dir / "flaskr").exists()

    jump.stop_sshd()  # the jump host's sessions go too, the forwarding to web1 with them
    down = project.cli("status", "--target", "prod", "--json")
    assert down.returncode != 0 and "Traceback" not in down.stderr
    assert "cannot reach the host over SSH" in down.stdout, down.stdout
    assert target.sshd_pid is not None  # web1 itself was up all along
    jump.start_sshd()
    status = project.ok("status", "--target", "prod", "--json")
    assert '"healthy": true' in status.stdout


def test_on_failure_rollback_puts_switched_hosts_back_when_one_cannot_switch(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=2, lb=False)
    project = make_project(tmp_path, fleet, cache, on_failure='"rollback"')
    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod")
    serving = get(fleet.web[0].address)[2]
    assert serving and get(fleet.web[1].address)[2] == serving
    # web2 stages fine (nothing reloads nginx before the switch), then its switch fails:
    # `nginx -t` refuses its config with a broken site beside the app's
    victim = fleet.web[1]
    broken = victim.base_dir / ".shipyard" / "nginx" / "sites" / "zz-broken.conf"
    broken.write_text("this is not nginx config\n")
    project.set_greeting("Hello from a release that is rolled back")
    failed = project.cli("deploy", "--target", "prod")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    assert "[switch] web2" in failed.stderr, failed.stderr
    assert "web1 rolled back to their previous release" in failed.stderr, failed.stderr
    for host in fleet.web:  # both serve the release that was live before the deploy
        _status, body, release = get(host.address)
        assert release == serving and greeting(body) == "Hello from flaskr", host.name
    broken.unlink()
