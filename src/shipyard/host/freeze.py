"""The exact pins of the live release, as its manifest lists the wheels it was installed from."""

from __future__ import annotations

from shipyard.errors import DeployError
from shipyard.host import protocol as p
from shipyard.host.layout import AppLayout
from shipyard.host.release import release_manifest
from shipyard.host.state import load_state


def live_pins(app: AppLayout) -> p.FreezeReply:
    """name==version (and the sha256 of its wheel) of every dependency the live release runs."""
    live = load_state(app).live
    if live is None:
        raise DeployError(
            f"app {app.name} is not deployed under {app.host.base}: there is no live release "
            "to freeze.",
            hint="Run 'shipyard deploy' first (or set SHIPYARD_HOME to where it was deployed).",
        )
    try:
        manifest = release_manifest(app, live)
    except (OSError, ValueError) as err:
        raise DeployError(
            f"cannot read the manifest of the live release {live} in {app.release(live)}: {err}.",
            hint="Deploy again: a release is installed from a complete artifact.",
        ) from None
    pins = [_pin(wheel.file, wheel.sha256) for wheel in manifest.wheels]
    return p.FreezeReply(release=live, pins=sorted(pins, key=lambda pin: pin.name))


def _pin(wheel: str, sha256: str) -> p.FrozenPin:
    # A wheel's file name is {name}-{version}-...: the name has '_' for '-' and '.'
    name, version = wheel.split("-")[:2]
    return p.FrozenPin(name=name.lower().replace("_", "-"), version=version, sha256=sha256)
