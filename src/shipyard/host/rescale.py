"""`shipyard scale` on one machine: save the counts, then apply them to the live release."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from shipyard.errors import ShipyardError
from shipyard.events import Progress
from shipyard.host.layout import AppLayout
from shipyard.host.lifecycle import DEFAULT_LOCK_WAIT, Machine, locked, switch
from shipyard.host.release import load_config, release_spec
from shipyard.host.scale import check_changes, load_scale, save_scale, scaled
from shipyard.host.state import AppState, load_state
from shipyard.host.supervisor import SupervisorClient
from shipyard.host.switch import Switch
from shipyard.spec.model import Spec


@dataclass(frozen=True)
class Rescaled:
    scale: dict[str, int]  # the counts now set on this host
    restarted: str | None  # the release restarted on a fresh slot (web scaled), if any


def scale(
    spec: Spec,
    target: Machine,
    changes: dict[str, int],
    progress: Progress,
    lock_wait: float = DEFAULT_LOCK_WAIT,
) -> Rescaled:
    """Scaling web restarts the live release on the other slot with zero downtime (the
    restart path); scaling a process only adds or stops its instances on the live slot.
    A scale that fails (an instance that does not stay up) is not kept."""
    app = target.app(spec)
    with locked(target, app, "scale", lock_wait, progress):
        state = load_state(app)
        live_spec = release_spec(app, state.live) if state.live else spec
        check_changes(live_spec, changes)
        before = load_scale(app)
        after = {**before, **changes}
        save_scale(app, after)
        if state.live is None or state.slot is None:
            return Rescaled(after, None)  # the next deploy starts with these counts
        web = scaled(live_spec, before).server.workers != scaled(live_spec, after).server.workers
        supervisor: SupervisorClient | None = None
        try:
            supervisor = target.servers.ensure_runtime(target.conn, target.host, target.run_as)
            if web:
                with progress.stage(f"scale: start {state.live} with {after['web']} web workers"):
                    switch(target, supervisor, app, state.live, state, "scale", release_cmd=False)
                return Rescaled(after, state.live)
            with progress.stage(f"scale: {_shown(changes)} on the live slot"):
                _on_live_slot(target, supervisor, app, state).rescale()
        except BaseException:
            save_scale(app, before)
            if not web and supervisor is not None:  # back to the counts that ran; the web
                # server was never touched
                with contextlib.suppress(ShipyardError):
                    _on_live_slot(target, supervisor, app, state).rescale()
            raise
        return Rescaled(after, None)


def _on_live_slot(
    target: Machine, supervisor: SupervisorClient, app: AppLayout, state: AppState
) -> Switch:
    assert state.live is not None
    return Switch(
        target.conn,
        supervisor,
        app,
        state.live,
        config=load_config(app),
        listen=target.listen,
        live=(state.live, state.idle_slot()),  # so that it runs on the live slot
        run_release_command=False,
        run_as=target.run_as,
        servers=target.servers,
        procs=target.procs(supervisor, app),
    )


def _shown(changes: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(changes.items()))
