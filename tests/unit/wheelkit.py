"""Small wheels written by hand for tests: a package, its metadata and console scripts."""

from __future__ import annotations

import zipfile
from pathlib import Path


def make_wheel(
    store: Path, name: str, files: dict[str, str], scripts: dict[str, str] | None = None
) -> Path:
    """`name`-1.0 as a pure-Python wheel in `store`; `scripts` maps a console script to its
    entry point ("pkg.cli:main")."""
    store.mkdir(parents=True, exist_ok=True)
    info = f"{name}-1.0.dist-info"
    entries = dict(files)
    entries[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n"
    entries[f"{info}/WHEEL"] = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    if scripts:
        lines = "".join(f"{script} = {target}\n" for script, target in scripts.items())
        entries[f"{info}/entry_points.txt"] = "[console_scripts]\n" + lines
    wheel = store / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in entries.items():
            archive.writestr(path, text)
        archive.writestr(
            f"{info}/RECORD", "".join(f"{n},,\n" for n in [*entries, f"{info}/RECORD"])
        )
    return wheel
