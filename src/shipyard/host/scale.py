"""An app's scale on a host: `shipyard scale` counts, kept in shared/scale.json across deploys
and applied over the spec's own (`server.workers`, `processes.NAME.count`)."""

from __future__ import annotations

import json

from shipyard.errors import ShipyardError, UsageError
from shipyard.host.layout import AppLayout
from shipyard.host.local import write_atomic
from shipyard.spec.model import Spec

MAX_COUNT = 64


def load_scale(app: AppLayout) -> dict[str, int]:
    try:
        raw = json.loads(app.scale_file.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:
        raise _corrupt(app, str(err)) from None
    if not isinstance(raw, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in raw.values()
    ):
        raise _corrupt(app, "it does not hold an object of counts")
    return {str(k): v for k, v in raw.items()}


def save_scale(app: AppLayout, scale: dict[str, int]) -> None:
    """Written like state.json, by the code that runs on the host."""
    content = json.dumps(dict(sorted(scale.items())), indent=2) + "\n"
    write_atomic(app.scale_file, content.encode(), 0o644)


def check_changes(spec: Spec, changes: dict[str, int]) -> None:
    """`web` and the spec's processes only, each to a count the spec would accept."""
    for name, count in changes.items():
        if name != "web" and name not in spec.processes:
            known = ", ".join(["web", *sorted(spec.processes)])
            raise UsageError(
                f"cannot scale {name!r}: the live release has no such process (known: {known}).",
                hint="Add it under [processes] in the spec and deploy, then scale it.",
            )
        low = 1 if name == "web" else 0
        if not low <= count <= MAX_COUNT:
            raise UsageError(
                f"cannot scale {name} to {count}: from {low} to {MAX_COUNT}.",
                hint="e.g. 'shipyard scale web=3 worker=2'.",
            )


def scaled(spec: Spec, scale: dict[str, int]) -> Spec:
    """The spec with the host's counts over its own; names it no longer has are ignored."""
    processes = {
        name: process.model_copy(update={"count": scale[name]}) if name in scale else process
        for name, process in spec.processes.items()
    }
    server = spec.server
    if "web" in scale:
        server = server.model_copy(update={"workers": scale["web"]})
    return spec.model_copy(update={"processes": processes, "server": server})


def _corrupt(app: AppLayout, why: str) -> ShipyardError:
    return ShipyardError(
        f"{app.scale_file} is corrupt ({why}); it holds the counts set with `shipyard scale`.",
        hint="Remove it and run 'shipyard scale' again (the spec's counts apply meanwhile).",
    )
