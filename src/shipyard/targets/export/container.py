"""Lay out a container image's build context: the rendered files (containerfile.py), the
release artifact's wheels and files. Nothing secret is read, so none can be written."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from shipyard.build.source import EXPORT_MARKER
from shipyard.errors import BuildError, UsageError
from shipyard.host import render
from shipyard.host.artifact import TREE, Artifact
from shipyard.host.wire import sha256_of
from shipyard.spec.model import Spec
from shipyard.targets.export import containerfile as cf

# What a context holds, so that --force replaces these and leaves anything else alone.
OURS = (cf.CONTAINERFILE, cf.REQUIREMENTS, cf.WHEELS, cf.APP_FILES, EXPORT_MARKER)
MARKER_TEXT = (
    "Written by `shipyard export container`: a container image's build context, made from a "
    "release. Builds of the project leave this directory out.\n"
)


@dataclass(frozen=True)
class ContainerContext:
    """A build context written: where, for which release, and how its image runs."""

    path: Path
    app: str
    release: str
    base: str
    port: int
    stop_signal: str
    graceful_timeout: int
    wheels: int
    secrets: tuple[str, ...]  # the names the container must be given when it starts
    static: tuple[str, ...]  # URL prefixes nginx serves on hosts: the app serves them here
    built_here: tuple[str, ...] = ()  # wheels that need this machine's shared libraries
    generated: tuple[str, ...] = ()  # the secrets a host deploy generates: the user makes them
    # A Django project's collected files' and uploads' URL prefixes, which it does not serve
    # with DEBUG off: a front (nginx) serves them from the image's /app/static and /data/media.
    front: tuple[str, ...] = ()
    release_command: str = ""  # the spec's release command, run before the server starts


def write_context(
    spec: Spec,
    artifact: Artifact,
    wheel_store: Path,
    out: Path,
    settings: cf.ImageSettings,
    force: bool = False,
) -> ContainerContext:
    """Write the build context of `artifact`'s image into `out` (new or empty, or `force`)."""
    check_export(spec, out, force)
    _clear(out)
    files = {EXPORT_MARKER: MARKER_TEXT, **cf.context_files(spec, artifact.manifest, settings)}
    for name, text in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
    wheels = _copy_wheels(artifact, wheel_store, out / cf.WHEELS)
    app_dir = out / cf.APP_FILES
    if (artifact.path / "static").is_dir():  # as a host's release has it
        shutil.copytree(artifact.path / "static", app_dir / "static", dirs_exist_ok=True)
    if artifact.manifest.is_tree:
        shutil.copytree(artifact.path / TREE, app_dir / "src", dirs_exist_ok=True)
    return ContainerContext(
        path=out,
        app=spec.name,
        release=artifact.id,
        base=settings.base or cf.default_base(cf.python_minor(artifact.manifest)),
        port=settings.port,
        stop_signal=f"SIG{render.stop_signal(spec)}",
        graceful_timeout=spec.server.graceful_timeout,
        wheels=wheels,
        secrets=tuple(sorted(spec.secrets)),
        static=tuple(sorted(spec.static)),
        built_here=tuple(cf.built_here(artifact.manifest)),
        generated=tuple(sorted(k for k, kind in spec.secrets.items() if kind == "generate")),
        front=tuple(_front_served(spec, artifact)),
        release_command=spec.release or "",
    )


def _front_served(spec: Spec, artifact: Artifact) -> list[str]:
    if spec.django is None:
        return []
    return [*cf.django_static_urls(spec, artifact.manifest), spec.django.media_url]


def check_export(spec: Spec, out: Path, force: bool) -> None:
    """Refuse what cannot be exported, before anything is built."""
    _refuse_line_breaks(spec)
    _check_output(out, force)


def _refuse_line_breaks(spec: Spec) -> None:
    for key, value in spec.env.items():
        if "\n" in value or "\r" in value:
            raise UsageError(
                f"env.{key} in the spec holds a line break: a Containerfile's ENV cannot hold one.",
                hint=f"Give {key} when the container starts (podman run --env-file, or "
                "-e), and keep it out of [env] for the export; or write it on one line.",
            )


def _check_output(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"{out} is a file, not a directory.", hint="Pass another directory with -o."
        )
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(
            f"{out} is not empty: the build context is written into a directory of its own.",
            hint="Pass an empty or new directory with -o, or --force to replace the context "
            "written there before (other files are left alone).",
        )


def _clear(out: Path) -> None:
    """Remove a context written before (what --force allows), and nothing else."""
    for name in OURS:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _copy_wheels(artifact: Artifact, wheel_store: Path, into: Path) -> int:
    """The artifact's wheels, each checked against its manifest's sha256: the very files a
    host installs."""
    into.mkdir(parents=True, exist_ok=True)
    manifest = artifact.manifest
    sources = [(wheel_store / ref.file, ref.sha256) for ref in manifest.wheels]
    if manifest.app_wheel is not None:
        app_wheel = manifest.app_wheel
        sources.append((artifact.path / "app" / app_wheel.file, app_wheel.sha256))
    for source, sha256 in sources:
        if not source.is_file() or sha256_of(source) != sha256:
            raise BuildError(
                f"the wheel {source.name} of release {artifact.id} is missing from {source.parent} "
                "or differs from the one its manifest names.",
                hint="Run the export again: the wheel is fetched or built anew.",
            )
        target = into / source.name
        shutil.copyfile(source, target)  # a copy: the cache's own files are left as they are
        target.chmod(0o644)
    return len(sources)
