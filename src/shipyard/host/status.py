"""What is running for an app: live release, processes, health through nginx."""

from __future__ import annotations

from typing import Any

from shipyard.host import heal, health, recover, tls
from shipyard.host.lifecycle import Machine, recover_if_free
from shipyard.host.procman import slot_names
from shipyard.host.release import release_spec
from shipyard.host.scale import load_scale, scaled
from shipyard.host.state import load_state
from shipyard.host.supervisor import Supervisor
from shipyard.host.switch import host_header
from shipyard.spec.model import Spec


def app_status(spec: Spec, target: Machine) -> dict[str, Any]:
    app = target.app(spec)
    recover_if_free(target, app)
    state = load_state(app)
    supervisor = Supervisor(target.host.supervisor_socket)
    running = supervisor.is_running()
    # the live release is checked as it was built, not as the spec in the tree says now
    live_spec = scaled(release_spec(app, state.live) if state.live else spec, load_scale(app))
    # the live slot's programs (or units), each of which should be running, and the
    # managed nginx
    procs = target.procs(supervisor, app)
    expected = slot_names(procs, live_spec, state.slot) if state.live and state.slot else []
    found = {p.name: p for p in (supervisor.processes() if running else [])}
    absent = "not loaded in supervisord"
    if procs.kind == "systemd":
        found.update((name, p) for name in expected if (p := procs.process(name)) is not None)
        absent = "no such unit"
    processes = [
        {"name": p.name, "state": p.state, "pid": p.pid, "description": p.description}
        for p in found.values()
        if p.name == "nginx"
    ] + [
        {"name": name, "state": "ABSENT", "pid": 0, "description": absent}
        if (p := found.get(name)) is None
        else {"name": p.name, "state": p.state, "pid": p.pid, "description": p.description}
        for name in (expected if running or procs.kind == "systemd" else [])
    ]
    url = tls.check_url(app, target.listen, live_spec.healthcheck.request_path)
    # through nginx whatever supervisord says: what answers on the port is what clients get
    probe = (
        health.probe_url(url, host_header(live_spec), health.Healthy.of(live_spec.healthcheck))
        if state.live
        else health.Probe(False, "not deployed")
    )
    healthy = probe.ok and probe.release == state.live
    detail = probe.detail
    if probe.ok and not healthy:
        answered = f"release {probe.release}" if probe.release else "no shipyard release"
        detail = f"{probe.detail} from {answered}, not the live {state.live}"
    return {
        "app": spec.name,
        "url": tls.check_url(app, target.listen, "/"),
        "base_dir": str(target.host.base),
        "release": state.live,
        "slot": state.slot,
        "supervisord": running,
        "processes": processes,
        "healthy": healthy,
        "health": detail,
        "runtime": runtime_problems(target, app.name),
        "serving_release": probe.release,
        "scale": load_scale(app),
    }


def runtime_problems(target: Machine, app: str) -> list[str]:
    """What is wrong with the runtime under the app (supervisord or nginx died, orphans left
    running), as heal.py would set it right at the next start or deploy."""
    supervisor = Supervisor(target.host.supervisor_socket)
    actions = recover.decide(target.host, supervisor)
    return [
        problem
        for a in actions
        if (not isinstance(a, heal.ReplaceApp | heal.StopOrphan) or a.app == app)
        and (problem := a.problem()) is not None
    ]
