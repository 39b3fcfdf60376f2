"""Targets: one interface (deploy, rollback, status, ...) and its implementations."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the package (for targets/dirs.py) loads no models
    from shipyard.spec.model import Spec
    from shipyard.targets.base import Background, Target


def open_target(
    project: Path, spec: Spec, name: str, cache: Path, background: Background | None = None
) -> Target:
    """The target `name` of the spec, as a Target (closed by the caller)."""
    if spec.target(name).type == "ssh":
        from shipyard.targets.ssh import SSHTarget  # the fleet's code loads only for fleets

        return SSHTarget(project, spec, name, cache)
    from shipyard.targets.local import LocalTarget

    return LocalTarget(project, spec, name, cache, background)
