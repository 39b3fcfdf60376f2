"""Fleet faults on real namespace hosts: a host unreachable at the start, the connection cut
mid-upload and mid-switch, a host whose disk is full. Each gives a per-host report naming the
host, leaves no host without a serving release, and a re-run converges.

The hosts have fleets of their own (two web hosts, no lb: each host is requested directly).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from netns import Fleet, FleetFactory, Host
from project import SHIPYARD, Project, make_project

from faultreport import error_message, record

pytestmark = [pytest.mark.slow, pytest.mark.fault]

APP = "flaskr"


def release_of(host: Host) -> str | None:
    """The release a host's nginx serves (its X-Shipyard-Release), None if nothing answers."""
    return release_of_host_address(host.address)


def release_of_host_address(address: str) -> str | None:
    conn = http.client.HTTPConnection(address, 80, timeout=10)
    try:
        conn.request("GET", "/version")
        response = conn.getresponse()
        response.read()
        return response.getheader("X-Shipyard-Release") if response.status == 200 else None
    except OSError:
        return None
    finally:
        conn.close()


def recorded_live(host: Host, *, over_ssh: bool = False) -> str | None:
    """The live release the host's state records; over ssh, as the host's own processes
    see its files (a host may have a disk of its own)."""
    path = host.base_dir / APP / "state.json"
    if over_ssh:
        read = host.fleet.ssh(host, f"cat {path}")
        assert read.returncode == 0, read.stderr
        text = read.stdout
    else:
        text = path.read_text()
    live = json.loads(text).get("live")
    return str(live) if live else None


@dataclass
class Load:
    """Requests to one host's nginx on new connections, counting every failure."""

    address: str
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.address, 80, timeout=10)
            try:
                conn.request("GET", "/version")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"HTTP {response.status}")
            except OSError as err:
                self.failed.append(repr(err))
            finally:
                conn.close()
            time.sleep(0.005)

    def snapshot(self) -> Load:
        return Load(self.address, self.ok, list(self.failed))

    @contextlib.contextmanager
    def running(self) -> Iterator[Load]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join()


@pytest.fixture
def deployed(make_fleet: FleetFactory, cache: Path, tmp_path: Path) -> Iterator[Project]:
    """Two provisioned web hosts serving the example's first release."""
    fleet = make_fleet(web=2, lb=False)
    project = make_project(tmp_path, fleet, cache)
    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod", "--skip-tests")
    first = {release_of(h) for h in fleet.web}
    assert len(first) == 1 and None not in first, first
    yield project


def start_deploy(project: Project) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [SHIPYARD, "deploy", "--target", "prod", "--skip-tests"],
        cwd=project.path,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], bool], deploy: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if condition():
            return
        if deploy.poll() is not None:
            out, err = deploy.communicate()
            pytest.fail(f"the deploy ended before {what}:\n{out}{err}")
        time.sleep(0.02)
    deploy.kill()
    pytest.fail(f"timed out waiting for {what}")


def serving_everywhere(fleet: Fleet) -> dict[str, str | None]:
    return {host.name: release_of(host) for host in fleet.web}


def converge(project: Project, serving_before: str | None) -> str:
    """A plain re-run completes: every host serves one new release, the one its state
    records."""
    rerun = project.ok("deploy", "--target", "prod", "--skip-tests")
    served = serving_everywhere(project.fleet)
    assert len(set(served.values())) == 1, (served, rerun.stdout)
    release = next(iter(served.values()))
    assert release is not None and release != serving_before, served
    for host in project.fleet.web:
        assert recorded_live(host, over_ssh=True) == release, host.name
    return release


def test_a_host_unreachable_at_the_start_is_named_and_nothing_switches(
    deployed: Project,
) -> None:
    fleet = deployed.fleet
    before = release_of(fleet.web[0])
    victim = fleet.web[1]
    victim.stop_sshd()
    deployed.set_greeting("Hello while web2 is away")
    failed = deployed.cli("deploy", "--target", "prod", "--skip-tests")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "web2" in failed.stderr and "cannot reach the host over SSH" in failed.stderr
    assert "Traceback" not in failed.stderr
    # web1 did not move either: one release across the fleet
    assert serving_everywhere(fleet) == {"web1": before, "web2": before}
    record(
        "a host unreachable at the start",
        target="ssh fleet of 2",
        exit_code=failed.returncode,
        message=error_message(failed.stderr),
        serving_after="every host its previous release",
    )
    victim.start_sshd()
    converge(deployed, before)


def test_a_connection_cut_mid_upload_is_reported_and_leaves_nothing_half_received(
    deployed: Project,
) -> None:
    fleet = deployed.fleet
    before = release_of(fleet.web[0])
    victim = fleet.web[1]
    # a release with a large incompressible file, sent over a slow link: the upload lasts
    (deployed.path / "flaskr" / "static" / "big.bin").write_bytes(os.urandom(3 << 20))
    deployed.set_greeting("Hello with a big file")
    incoming = victim.base_dir / ".shipyard" / "incoming"
    victim.limit_inbound("2mbit")
    try:
        deploy = start_deploy(deployed)

        def receiving() -> bool:
            return incoming.is_dir() and any(p.is_file() for p in incoming.rglob("*"))

        wait_for(receiving, deploy, "web2 receiving the upload")
        victim.stop_sshd()
        out, err = deploy.communicate(timeout=180)
    finally:
        victim.limit_inbound(None)
    assert deploy.returncode == 1, out + err
    assert "web2" in err and "lost the connection" in err, err
    assert "Nothing was switched anywhere" in err and "Traceback" not in err
    assert serving_everywhere(fleet) == {"web1": before, "web2": before}
    # the half-received payload is gone once the agent saw its stream end
    deadline = time.monotonic() + 10
    while any(incoming.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(incoming.iterdir()), list(incoming.iterdir())
    record(
        "the connection to a host cut mid-upload",
        target="ssh fleet of 2",
        exit_code=deploy.returncode,
        message=error_message(err),
        serving_after="every host its previous release",
    )
    victim.start_sshd()
    converge(deployed, before)


def test_a_connection_cut_mid_switch_leaves_each_host_serving_and_a_rerun_converges(
    deployed: Project,
) -> None:
    fleet = deployed.fleet
    before = release_of(fleet.web[0])
    victim = fleet.web[1]
    site = victim.base_dir / ".shipyard" / "nginx" / "sites" / f"{APP}.conf"
    sites = site.parent
    old_site = site.read_bytes()
    deployed.set_greeting("Hello across a cut switch")
    deploy = start_deploy(deployed)

    def switching() -> bool:
        # the site file moved on (or a new one is being made beside it)
        return site.read_bytes() != old_site or len(list(sites.iterdir())) > 1

    wait_for(switching, deploy, "web2 switching")
    victim.stop_sshd()
    _out, err = deploy.communicate(timeout=180)
    served = serving_everywhere(fleet)
    # whatever the cut interrupted, every host serves a release, and the one it records
    assert None not in served.values(), served
    for host in fleet.web:
        deadline = time.monotonic() + 30  # the host finishes (or undoes) its switch alone
        while recorded_live(host) != release_of(host) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert recorded_live(host) == release_of(host), host.name
    if deploy.returncode != 0:  # the cut came before web2's reply
        assert "web2" in err and "Traceback" not in err, err
        assert "finishes its switch on its own" in err, err
    record(
        "the connection to a host cut mid-switch",
        target="ssh fleet of 2",
        exit_code=deploy.returncode,
        message=error_message(err),
        serving_after=", ".join(
            f"{k}: {'new' if v != before else 'previous'}" for k, v in served.items()
        ),
    )
    victim.start_sshd()
    converge(deployed, before)


@contextlib.contextmanager
def full_disk(host: Host) -> Iterator[None]:
    """Everything left on the host's base filesystem taken by one file, for the block."""
    filler = host.base_dir / "filler"
    host.in_mounts(["sh", "-c", f"dd if=/dev/zero of={filler} bs=1M 2>/dev/null; true"])
    try:
        yield
    finally:
        host.in_mounts(["rm", "-f", str(filler)])


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root (CI runs as root)")
def test_a_host_whose_disk_is_full_is_named_and_the_fleet_keeps_its_release(
    make_fleet: FleetFactory, cache: Path, tmp_path: Path
) -> None:
    fleet = make_fleet(web=2, lb=False)
    victim = fleet.web[1]
    # web2's base dir is a small disk of its own, seen only by web2's processes
    victim.in_mounts(
        ["mount", "-t", "tmpfs", "-o", "size=400m,mode=0755", "tmpfs", str(victim.base_dir)]
    )
    project = make_project(tmp_path, fleet, cache)
    project.ok("provision", "prod")
    project.ok("deploy", "--target", "prod", "--skip-tests")
    before = release_of(fleet.web[0])
    assert before is not None and release_of(victim) == before
    project.set_greeting("Hello on a full disk")
    with full_disk(victim):
        failed = project.cli("deploy", "--target", "prod", "--skip-tests")
        assert failed.returncode == 1, failed.stdout + failed.stderr
        assert "web2" in failed.stderr and "no space left" in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr and "internal error" not in failed.stderr
        assert serving_everywhere(fleet) == {"web1": before, "web2": before}
    record(
        "a host's disk full",
        target="ssh fleet of 2",
        exit_code=failed.returncode,
        message=error_message(failed.stderr),
        serving_after="every host its previous release",
    )
    converge(project, before)


def agent_pids(host: Host) -> list[int]:
    """The host's agent processes: the resident one and the session relays to it."""
    found = []
    for pid in host.pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"shipyard.host.agent" in cmdline:
            found.append(pid)
    return found


def test_the_agent_killed_mid_switch_leaves_the_host_serving_and_the_next_command_recovers(
    deployed: Project,
) -> None:
    fleet = deployed.fleet
    before = release_of(fleet.web[0])
    victim = fleet.web[1]
    site = victim.base_dir / ".shipyard" / "nginx" / "sites" / f"{APP}.conf"
    old_site = site.read_bytes()
    deployed.set_greeting("Hello across a killed agent")
    with Load(victim.address).running() as load:
        deploy = start_deploy(deployed)
        wait_for(
            lambda: site.read_bytes() != old_site or len(list(site.parent.iterdir())) > 1,
            deploy,
            "web2 switching",
        )
        for pid in agent_pids(victim):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _out, err = deploy.communicate(timeout=180)
        assert deploy.returncode == 1, err
        assert "web2" in err and "Traceback" not in err, err
        during_kill = load.snapshot()
        # the next command on that host first finishes or undoes what the agent left
        release = converge(deployed, before)
    record(
        "the agent killed mid-switch",
        target="ssh fleet of 2",
        exit_code=deploy.returncode,
        message=error_message(err),
        failed_requests=len(load.failed),
        requests=load.ok + len(load.failed),
        serving_after="every host the new release after the next deploy",
    )
    assert not during_kill.failed, during_kill.failed[:5]
    assert not load.failed, load.failed[:5]
    assert release_of(victim) == release
