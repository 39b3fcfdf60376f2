"""Installing a release on a host: the steps as data, and the app's environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

from shipyard import render
from shipyard.build.artifact import LOCK, MANIFEST, SPEC, Artifact, Manifest
from shipyard.build.tools import uv
from shipyard.hosts.base import Command, Step, Symlink, Upload
from shipyard.layout import AppLayout
from shipyard.spec import Spec

COMPLETE = ".complete"


def is_installed(app: AppLayout, release_id: str) -> bool:
    return (app.release(release_id) / COMPLETE).is_file()


def installed_releases(app: AppLayout) -> list[str]:
    if not app.releases.is_dir():
        return []
    return sorted(p.parent.name for p in app.releases.glob(f"*/{COMPLETE}"))


def release_spec(app: AppLayout, release_id: str) -> Spec:
    """The spec a release was built with: rollbacks and restarts run it as it was."""
    return Spec.model_validate_json((app.release(release_id) / SPEC).read_text())


def release_manifest(app: AppLayout, release_id: str) -> Manifest:
    return Manifest.from_json((app.release(release_id) / MANIFEST).read_text())


def install_steps(
    spec: Spec,
    app: AppLayout,
    artifact: Artifact,
    wheel_store: Path,
    python: str,
    run_as: str | None = None,
) -> list[Step]:
    """Unpack the artifact into releases/<id>, make its venv offline, link persistent data.

    The venv is made in place (a venv cannot be moved), so completeness is a marker file
    written last; an incomplete directory is removed and redone.
    """
    rid = artifact.id
    release = app.release(rid)
    venv = app.venv(rid)
    manifest = artifact.manifest
    steps: list[Step] = [
        Command(("rm", "-rf", str(release))),
        Command(
            ("mkdir", "-p", str(release), str(app.var), str(app.data), str(app.logs), str(app.run))
        ),
        Command(("cp", "-a", *_artifact_entries(artifact), str(release))),
        *(_owned_by(run_as, app) if run_as else []),
        uv("venv", "--quiet", "--python", python, str(venv)),
        uv(
            "pip",
            "install",
            "--quiet",
            "--offline",
            "--no-index",
            "--python",
            str(venv / "bin" / "python"),
            "--find-links",
            str(wheel_store),
            "-r",
            str(release / LOCK),
            str(release / "app" / manifest.app_wheel.file),
        ),
        # Flask keeps its instance folder at <venv>/var/<name>-instance: keep it across releases
        Symlink(str(app.var), _posix(venv / "var")),
    ]
    for directory in spec.persistent:
        link = release / directory
        steps.append(Command(("mkdir", "-p", str(app.data / directory), str(link.parent))))
        if run_as:
            steps.append(Command(("chown", f"{run_as}:", str(app.data / directory))))
        steps.append(Symlink(str(app.data / directory), _posix(link)))
    for name, content in render.server_conf_files(spec, app, rid).items():
        steps.append(Upload(content.encode(), _posix(release / name)))
    # Compiled now, not by the app at each start: the app user cannot write into its release.
    # Bytecode of unchanged files is linked from the previous release first (bytecode.py).
    steps.append(compile_step(venv))
    steps.append(Upload(b"", _posix(release / COMPLETE)))
    return steps


def compile_step(venv: Path) -> Command:
    return Command(
        (str(venv / "bin" / "python"), "-m", "compileall", "-q", str(venv / "lib")),
        timeout=600,
    )


def _owned_by(run_as: str, app: AppLayout) -> list[Step]:
    """What the app writes belongs to the app user; its code stays root's, read-only to it."""
    return [
        Command(("chown", "-R", f"{run_as}:", str(app.var), str(app.run))),
        Command(("chown", f"{run_as}:", str(app.data), str(app.logs))),
    ]


def _artifact_entries(artifact: Artifact) -> list[str]:
    return sorted(str(p) for p in artifact.path.iterdir())


def static_dirs(app: AppLayout, release_id: str) -> dict[str, Path]:
    manifest = release_manifest(app, release_id)
    return {prefix: app.release(release_id) / "static" / d for prefix, d in manifest.static.items()}


def app_environment(
    spec: Spec, app: AppLayout, release_id: str, config: dict[str, str]
) -> dict[str, str]:
    """What the app's processes, its release command and `shipyard run` see."""
    venv = app.venv(release_id)
    env = {"FLASK_APP": spec.entry, **spec.env, **config}
    env.update(
        PATH=f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        VIRTUAL_ENV=str(venv),
        PYTHONPATH=str(app.release(release_id)),
        PYTHONUNBUFFERED="1",
        SHIPYARD_APP=spec.name,
        SHIPYARD_RELEASE=release_id,
    )
    return env


def load_config(app: AppLayout) -> dict[str, str]:
    try:
        raw = json.loads(app.config_file.read_text())
    except FileNotFoundError:
        return {}
    return {str(k): str(v) for k, v in raw.items()}


def config_upload(app: AppLayout, config: dict[str, str]) -> Upload:
    content = json.dumps(dict(sorted(config.items())), indent=2) + "\n"
    return Upload(content.encode(), _posix(app.config_file), mode=0o600)


def remove_release(app: AppLayout, release_id: str) -> None:
    shutil.rmtree(app.release(release_id), ignore_errors=True)


def _posix(path: Path) -> PurePosixPath:
    return PurePosixPath(path)
