"""`shipyard export ENGINE`: the app rendered for an engine that runs it, written to a
directory instead of deployed. Each engine is one subcommand of the `export` group."""

from __future__ import annotations

from pathlib import Path

import click

from shipyard.cli import views
from shipyard.cli.options import PlainPath

DEFAULT_KUBERNETES_DIR = Path("deploy") / "kubernetes"


@click.group()
def export() -> None:
    """Render the app for an engine that runs it (files to apply), instead of deploying."""


@export.command()
@click.option(
    "--dir",
    "project",
    default=".",
    type=PlainPath(file_okay=False, path_type=Path),
    help="The project directory.",
)
@click.option(
    "--target",
    "-t",
    default=None,
    help="Take the secrets' values from this target's config (`shipyard config set`); "
    "without it, secret.env is yours to write.",
)
@click.option("--image", "image_ref", metavar="REF", help="The app's image; default NAME:latest.")
@click.option(
    "-o",
    "--output",
    type=PlainPath(file_okay=False, path_type=Path),
    help="Directory to write; default: deploy/kubernetes in the project.",
)
@click.option("--force", is_flag=True, help="Write into a directory that is not empty.")
def kubernetes(
    project: Path, target: str | None, image_ref: str | None, output: Path | None, force: bool
) -> None:
    """A kustomize base: Deployments, Service, Ingress, ConfigMap and Secret, release Job."""
    from shipyard.build.source import build_choice
    from shipyard.cli.commands import _spec, _target
    from shipyard.targets.export import kubernetes as k8s
    from shipyard.targets.export.write import Written, secret_values, write_export

    root, spec = _spec(project)
    values: dict[str, str] | None = None
    generated: list[str] = []
    if target is not None:
        with _target(project, target) as opened:
            stored = opened.config_get()
        values, generated = secret_values(spec, stored, target)
    tree = build_choice(root, spec.build.mode).is_tree
    rendered = k8s.render(spec, image_ref or f"{spec.name}:latest", tree, values)
    directory = output if output is not None else root / DEFAULT_KUBERNETES_DIR
    files, state = write_export(rendered, directory, force)
    views.exported(Written(directory, files, rendered.resources, state, generated, target))
