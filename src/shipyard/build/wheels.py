"""The wheel store: one wheel per pinned dependency, fetched or built once, then reused."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from packaging import tags
from packaging.tags import Tag, sys_tags
from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from shipyard.build.deps import Pin
from shipyard.build.platforms import Platform
from shipyard.build.tools import fail
from shipyard.errors import BuildError
from shipyard.host.python import PythonInfo
from shipyard.host.steps import Command, Connection


def compatible_tags(python: PythonInfo, platform: Platform | None = None) -> set[Tag]:
    """The wheel tags that install on `python` on `platform` (None: this machine)."""
    foreign = platform is not None and not platform.is_local
    if python.is_shipyards_own and not foreign:
        return set(sys_tags())
    version = tuple(int(part) for part in python.minor.split("."))
    platforms = platform.wheel_platforms() if platform is not None and foreign else None
    return set(tags.cpython_tags(python_version=version, platforms=platforms)) | set(
        tags.compatible_tags(python_version=version, platforms=platforms)
    )


def find_wheels(
    store: Path, pins: list[Pin], python: PythonInfo, platform: Platform | None = None
) -> dict[Pin, Path]:
    """The stored wheel for each pin that has one that installs on `python` and `platform`."""
    accepted = compatible_tags(python, platform)
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


def fetch_command(
    store: Path, requirements: Path, python: PythonInfo, platform: Platform | None
) -> Command:
    """pip, fetching or building the listed wheels into the store.

    For this machine's own Python and platform a wheel may be built from an sdist; for another
    Python or platform only published wheels will do (nothing here could build for them).
    """
    foreign = platform is not None and not platform.is_local
    common = ("--no-deps", "--quiet", "--disable-pip-version-check", "-r", str(requirements))
    if python.is_shipyards_own and not foreign:
        return Command(
            (sys.executable, "-m", "pip", "wheel", "-w", str(store), *common), timeout=1800
        )
    target: list[str] = ["--only-binary", ":all:", "--python-version", python.minor]
    target += ["--implementation", "cp"]
    for tag in platform.wheel_platforms() if platform is not None and foreign else []:
        target += ["--platform", tag]
    argv = (sys.executable, "-m", "pip", "download", "-d", str(store), *common, *target)
    return Command(argv, timeout=1800)


def fill_store(
    conn: Connection,
    store: Path,
    pins: list[Pin],
    python: PythonInfo,
    platform: Platform | None = None,
) -> dict[Pin, Path]:
    """Fetch (or build from sdist) the wheels the store lacks; return a wheel for every pin."""
    store.mkdir(parents=True, exist_ok=True)
    found = find_wheels(store, pins, python, platform)
    missing = [pin for pin in pins if pin not in found]
    where = f"Python {python.minor}" + (
        f" on {platform.describe()}" if platform is not None and not platform.is_local else ""
    )
    if missing:
        with tempfile.TemporaryDirectory(prefix="shipyard-wheels-") as tmp:
            requirements = Path(tmp) / "missing.txt"
            requirements.write_text("".join(f"{pin}\n" for pin in missing))
            result = conn.run(fetch_command(store, requirements, python, platform))
            if not result.ok:
                raise fail(
                    result,
                    f"cannot fetch or build wheels for the pinned dependencies ({where})",
                    hint="A package with no wheel is built from source: it may need build tools "
                    "(apt-get install build-essential python3-dev); for another Python or "
                    "platform, pin versions that publish wheels for it.",
                )
        found = find_wheels(store, pins, python, platform)
    still_missing = [str(pin) for pin in pins if pin not in found]
    if still_missing:
        raise BuildError(
            f"no wheel for {', '.join(still_missing)} installs on {where}.",
            hint="Pin a version that ships a wheel for it, or build one into the store.",
        )
    return found
