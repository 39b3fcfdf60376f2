"""`shipyard export`: render what another engine runs a release with, instead of running it.

Each engine is a subcommand of the `export` group; each builds the release artifact as
`shipyard build` does, then hands it to its writer in `shipyard.export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from shipyard.cli import views
from shipyard.cli.ui import Reporter
from shipyard.targets.dirs import default_cache_dir

if TYPE_CHECKING:
    from shipyard.host.artifact import Artifact
    from shipyard.spec.model import Spec


@click.group()
def export() -> None:
    """Write what another engine needs to run the app (a container image's build context)."""


def built_release(root: Path, spec: Spec, reporter: Reporter) -> Artifact:
    """The project's release artifact, built (or reused) as `shipyard build` does."""
    from shipyard.build import artifact as artifacts
    from shipyard.host.local import LocalConnection

    cache = default_cache_dir()
    with reporter.stage("build"):
        inputs = artifacts.gather_inputs(LocalConnection(), root, spec, cache)
        return artifacts.build(LocalConnection(), root, spec, cache, inputs)


@export.command()
@click.argument(
    "project", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Directory of the build context.  [default: deploy/container in the project]",
)
@click.option("--force", is_flag=True, help="Replace a context written there before.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8000,
    show_default=True,
    help="The TCP port the app server listens on in the container.",
)
@click.option(
    "--base",
    default="",
    help="The base image (FROM); it must have the wheels' Python.  "
    "[default: docker.io/library/python:X.Y-slim-bookworm]",
)
def container(project: Path, output: Path | None, force: bool, port: int, base: str) -> None:
    """Write a Containerfile and its build context: the release's wheels, installed offline
    as a non-root user, the app server as PID 1."""
    from shipyard.cli.commands import _spec
    from shipyard.export.container import check_export, write_context
    from shipyard.export.containerfile import ImageSettings
    from shipyard.host.artifact import wheel_store

    root, spec = _spec(project)
    out = output if output is not None else root / "deploy" / "container"
    check_export(spec, out, force)  # before a build that may take a while
    reporter = Reporter()
    built = built_release(root, spec, reporter)
    with reporter.stage("export"):
        written = write_context(
            spec, built, wheel_store(default_cache_dir()), out, ImageSettings(port, base), force
        )
    views.container_exported(written)
