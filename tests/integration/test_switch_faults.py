"""A command killed (SIGKILL) or terminated (SIGTERM) at each step of its switch, under load:
no request fails, then or during the next command, and afterwards state.json and `current`
name what nginx serves. The testing hook SHIPYARD_FAULT (host/faults.py) stops the command
at the step; SHIPYARD_WARM=0 makes the command's own process the one that gets the signal.

With SHIPYARD_FAULT_REPORT set, each case appends its result to that file as a JSON line.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from faultreport import record
from shipyard.host import journal
from shipyard.host.state import load_state

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = [pytest.mark.slow, pytest.mark.fault]

APP = "flaskr"
DEPLOY_STEPS = (
    "after-env",
    "after-start",
    "after-site-written",
    "before-reload",
    "after-reload",
    "before-record",
    "before-retire",
)
SIGNALS = ("KILL", "TERM")
VARIANTS = ("variant A", "variant B")
# A deploy follows these (a deploy recovers as a rollback does); a rollback, the others.
NEXT_AFTER_DEPLOY = {("after-reload", "KILL"): "deploy", ("before-record", "KILL"): "deploy"}
# A step of a switch already checked through nginx: a signal there acts once it is recorded.
RECORDED = ("before-retire",)


@dataclass(frozen=True)
class CaseResult:
    case: str
    signal: str
    failed_during_kill: int
    failed_during_next: int
    exit_code: int
    message: str


@pytest.fixture(scope="module")
def app(module_deployment: Deployment) -> Iterator[Deployment]:
    """The example app deployed twice (so that a rollback has somewhere to go), the old
    slot retired at once (no rollback window): each case starts from a settled app."""
    spec = module_deployment.project / "shipyard.toml"
    spec.write_text("rollback_window = 0\n" + spec.read_text())
    for variant in VARIANTS:
        module_deployment.set_greeting(variant)
        done = _shipyard(
            module_deployment, "deploy", str(module_deployment.project), "--skip-tests"
        )
        assert done.returncode == 0, done.stderr
    yield module_deployment


def _env(deployment: Deployment, fault: str | None, warm: bool) -> dict[str, str]:
    env = {**os.environ, "SHIPYARD_HOME": str(deployment.base)}
    env["SHIPYARD_WARM"] = "1" if warm else "0"
    env.pop("SHIPYARD_FAULT", None)
    if fault is not None:
        env["SHIPYARD_FAULT"] = fault
    return env


def _shipyard(
    deployment: Deployment, *args: str, fault: str | None = None, warm: bool = False
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard.cli", *args],
        env=_env(deployment, fault, warm),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _served(deployment: Deployment) -> tuple[str | None, str | None, str]:
    """The release and slot nginx answers from, and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", deployment.port, timeout=10)
    try:
        conn.request("GET", "/version")
        response = conn.getresponse()
        body = response.read().decode()
        return response.getheader("X-Shipyard-Release"), response.getheader("X-Shipyard-Slot"), body
    finally:
        conn.close()


def _settled(deployment: Deployment) -> None:
    """Wait for the detached child of the last command (retiring the old slot) to finish:
    it holds the app's lock until then."""
    from shipyard.host.state import app_lock

    with app_lock(deployment.app(APP), "test", 120):
        pass


def _deploy_args(deployment: Deployment) -> tuple[str, ...]:
    """A deploy of the variant that is not serving: its artifact is built once, reused after."""
    body = _served(deployment)[2]
    deployment.set_greeting(VARIANTS[1] if body == VARIANTS[0] else VARIANTS[0])
    return ("deploy", str(deployment.project), "--skip-tests")


def _command_args(deployment: Deployment, command: str) -> tuple[str, ...]:
    project = str(deployment.project)
    if command == "deploy":
        return _deploy_args(deployment)
    if command == "rollback":
        return ("rollback", project)
    if command == "restart":
        return ("restart", project)
    assert command == "config set"
    return ("config", "set", f"FAULT_CASE={time.monotonic_ns()}", "--dir", project)


def _report(result: CaseResult, command: str, step: str, requests: int, serving: str) -> None:
    record(
        f"SIG{result.signal} to `shipyard {command}` at its switch's {step}; then the next command",
        target="local",
        exit_code=result.exit_code,
        message=result.message or "(killed: no message)",
        failed_requests=result.failed_during_kill + result.failed_during_next,
        requests=requests,
        serving_after=serving,
    )


def _first_line(text: str) -> str:
    """The first line of the command's error message ("" when it had none: killed)."""
    lines = [line.strip() for line in text.splitlines()]
    return next((line for line in lines if line.startswith("error:")), "")


def _run_case(deployment: Deployment, command: str, step: str, signame: str, then: str) -> None:
    _settled(deployment)
    app = deployment.app(APP)
    with deployment.under_load() as load:
        load.wait_for_more(5)
        killed = _shipyard(
            deployment, *_command_args(deployment, command), fault=f"switch:{step}:{signame}"
        )
        load.wait_for_more(5)
    kill_load = load
    failed_during_kill = list(load.failed)
    left = journal.load(app)

    _settled(deployment)
    with deployment.under_load() as load:
        load.wait_for_more(5)
        following = _shipyard(deployment, *_command_args(deployment, then))
        load.wait_for_more(5)
    failed_during_next = list(load.failed)

    message = _first_line(killed.stderr)
    counted = kill_load.ok + len(kill_load.failed) + load.ok + len(load.failed)
    serving = _served(deployment)[0]
    _report(
        CaseResult(
            f"{command} {step}",
            signame,
            len(failed_during_kill),
            len(failed_during_next),
            killed.returncode,
            message,
        ),
        command,
        step,
        counted,
        f"release {serving}" if serving else "nothing",
    )
    assert failed_during_kill == [], failed_during_kill[:5]
    assert failed_during_next == [], failed_during_next[:5]
    assert following.returncode == 0, following.stderr
    if signame == "KILL":
        assert killed.returncode == -signal.SIGKILL
        assert left is not None and left.action == command  # the killed switch's journal
        assert "recovered an interrupted" in following.stderr, following.stderr
    else:
        number = signal.Signals[f"SIG{signame}"]
        assert killed.returncode == 128 + number, killed.stderr
        assert f"terminated by SIG{signame}" in message
        # switched back at once, but once recorded, the old slot is left to the next command
        assert (left is not None) == (step in RECORDED)
    _settled(deployment)
    release, slot, _ = _served(deployment)
    state = load_state(app)
    assert (state.live, state.slot) == (release, slot)
    assert os.readlink(app.current) == f"releases/{release}"
    assert journal.load(app) is None


@pytest.mark.parametrize("signame", SIGNALS)
@pytest.mark.parametrize("step", DEPLOY_STEPS)
def test_deploy_killed_at_each_step_of_its_switch(app: Deployment, step: str, signame: str) -> None:
    _run_case(app, "deploy", step, signame, then=NEXT_AFTER_DEPLOY.get((step, signame), "rollback"))


@pytest.mark.parametrize("step", ("after-start", "after-reload"))
def test_a_hang_up_in_a_deploys_switch_switches_back_as_sigterm_does(
    app: Deployment, step: str
) -> None:
    _run_case(app, "deploy", step, "HUP", then="rollback")


@pytest.mark.parametrize("signame", SIGNALS)
@pytest.mark.parametrize("command", ("rollback", "restart", "config set"))
def test_other_switches_killed_after_the_reload(
    app: Deployment, command: str, signame: str
) -> None:
    _run_case(
        app,
        command,
        "after-reload",
        signame,
        then="rollback" if command != "rollback" else "deploy",
    )


def test_another_apps_reload_leaves_a_killed_switch_where_its_state_says(
    app: Deployment, tmp_path: Path
) -> None:
    """The apps under one base share one nginx: a deploy of another app, whose reload runs
    while this app's killed switch left its new site file in place, does not move this
    app's traffic; this app's next command then undoes the rest."""
    _settled(app)
    layout = app.app(APP)
    before = load_state(layout).live
    with app.under_load() as load:
        killed = _shipyard(app, *_deploy_args(app), fault="switch:before-reload:KILL")
        assert killed.returncode == -signal.SIGKILL
        assert journal.load(layout) is not None
        other = tmp_path / "other"
        shutil.copytree(app.project, other, ignore=shutil.ignore_patterns("__pycache__"))
        spec = other / "shipyard.toml"
        port = _free_port()
        text = spec.read_text().replace('name = "flaskr"', 'name = "other"')
        spec.write_text(text.replace(f":{app.port}", f":{port}"))
        deployed = _shipyard(app, "deploy", str(other), "--skip-tests")
        assert deployed.returncode == 0, deployed.stderr
        load.wait_for_more(5)
    assert load.failed == [], load.failed[:5]
    assert _served(app)[0] == before == load_state(layout).live  # nginx reloaded, unmoved

    status = _shipyard(app, "status", str(app.project))
    assert status.returncode == 0, status.stderr
    assert "recovered an interrupted deploy" in status.stderr and "undone" in status.stderr
    release, slot, _ = _served(app)
    assert (load_state(layout).live, load_state(layout).slot) == (release, slot)
    assert journal.load(layout) is None
    assert _shipyard(app, "destroy", str(other), "--yes").returncode == 0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stopped_child_of(parents: set[int], timeout: float = 120) -> int:
    """A child of one of `parents` that is stopped (state T), once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "T" and int(fields[1]) in parents:
                return int(stat.parent.name)
        time.sleep(0.05)
    raise AssertionError(f"no stopped child of {parents} within {timeout} s")


def test_a_sigterm_to_the_warm_launcher_reaches_the_command_and_switches_back(
    app: Deployment,
) -> None:
    """With warm start the command runs in a child of the warm server: a SIGTERM sent to
    the program the user started is passed on to it. The command stops itself (SIGSTOP)
    at a step of its switch, the SIGTERM is sent to the launcher meanwhile, and SIGCONT
    lets the command go on to meet it."""
    _settled(app)
    layout = app.app(APP)
    before = load_state(layout).live
    assert _shipyard(app, "--version", warm=True).returncode == 0  # leaves a warm server
    warm_dir = Path(os.environ["SHIPYARD_WARM_DIR"])
    deadline = time.monotonic() + 60
    while not list(warm_dir.glob("*.sock")) and time.monotonic() < deadline:
        time.sleep(0.05)
    servers = {int(lock.read_text().split()[0]) for lock in warm_dir.glob("*.lock")}
    with app.under_load() as load:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "shipyard.cli", *_deploy_args(app)],
            env=_env(app, "switch:after-reload:STOP", warm=True),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        command = _stopped_child_of(servers)
        assert command != launcher.pid  # the command runs in the warm server's child
        launcher.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        launcher.send_signal(signal.SIGCONT)
        _, err = launcher.communicate(timeout=120)
        load.wait_for_more(5)
    assert load.failed == [], load.failed[:5]
    assert launcher.returncode == 128 + signal.SIGTERM, err
    assert "terminated by SIGTERM" in err
    assert journal.load(layout) is None
    release, slot, _ = _served(app)
    assert release == before == load_state(layout).live
    assert load_state(layout).slot == slot
