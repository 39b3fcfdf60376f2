"""The wheel store: one wheel per pinned dependency, fetched or built once, then reused."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from packaging import tags
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from shipyard.build.deps import Pin
from shipyard.build.tools import PythonInfo, fail
from shipyard.errors import BuildError
from shipyard.hosts.base import Command, Connection


def compatible_tags(python: PythonInfo) -> set[Tag]:
    if python.is_shipyards_own:
        return set(sys_tags())
    version = tuple(int(part) for part in python.minor.split("."))
    return set(tags.cpython_tags(python_version=version)) | set(
        tags.compatible_tags(python_version=version)
    )


def find_wheels(store: Path, pins: list[Pin], python: PythonInfo) -> dict[Pin, Path]:
    """The stored wheel for each pin that has one that installs on `python`."""
    accepted = compatible_tags(python)
    wanted = {(pin.name, pin.version): pin for pin in pins}
    found: dict[Pin, Path] = {}
    for wheel in store.glob("*.whl") if store.is_dir() else []:
        try:
            name, version, _build, wheel_tags = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename:
            continue
        pin = wanted.get((str(name), str(version)))
        if pin is not None and wheel_tags & accepted:
            found[pin] = wheel
    return found


def fill_store(
    conn: Connection, store: Path, pins: list[Pin], python: PythonInfo
) -> dict[Pin, Path]:
    """Fetch (or build from sdist) the wheels the store lacks; return a wheel for every pin."""
    store.mkdir(parents=True, exist_ok=True)
    found = find_wheels(store, pins, python)
    missing = [pin for pin in pins if pin not in found]
    if missing:
        with tempfile.TemporaryDirectory(prefix="shipyard-wheels-") as tmp:
            requirements = Path(tmp) / "missing.txt"
            requirements.write_text("".join(f"{pin}\n" for pin in missing))
            argv = [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-w",
                str(store),
                "-r",
                str(requirements),
            ]
            if not python.is_shipyards_own:
                argv += ["--python-version", python.minor, "--only-binary", ":all:"]
            result = conn.run(Command(tuple(argv), timeout=1800))
            if not result.ok:
                raise fail(
                    result,
                    "cannot fetch or build wheels for the pinned dependencies",
                    hint="A package with no wheel is built from source: it may need build tools "
                    "(apt-get install build-essential python3-dev).",
                )
        found = find_wheels(store, pins, python)
    still_missing = [str(pin) for pin in pins if pin not in found]
    if still_missing:
        raise BuildError(
            f"no wheel for {', '.join(still_missing)} installs on Python {python.version} here.",
            hint="Pin a version that ships a wheel for this Python, or build one into the store.",
        )
    return found
