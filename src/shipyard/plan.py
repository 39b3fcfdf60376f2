"""A deploy plan as data, computed from the spec and read-only facts; printed by --dry-run."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from rich.console import Console
from rich.markup import escape

from shipyard import render, runtime
from shipyard.build import artifact as artifacts
from shipyard.build.tools import find_python
from shipyard.deploy import LocalTarget
from shipyard.hosts.base import MASK, Upload
from shipyard.release import (
    InstallStep,
    app_environment,
    install_steps,
    is_installed,
    layer_id,
    layer_is_complete,
    layer_steps,
    load_config,
)
from shipyard.spec import Spec
from shipyard.state import load_state
from shipyard.switch import listen_url


@dataclass(frozen=True)
class FileChange:
    path: PurePosixPath
    diff: str  # unified diff; empty when unchanged


@dataclass
class PlannedStage:
    name: str
    notes: list[str] = field(default_factory=list)
    steps: list[InstallStep] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)


@dataclass
class Plan:
    app: str
    release: str
    stages: list[PlannedStage]


def deploy_plan(project: Path, spec: Spec, target: LocalTarget) -> Plan:
    """What `deploy` would do now. Reads the project and the target; writes nothing there."""
    app = target.app(spec)
    app.check_socket_paths()
    nginx = runtime.find_nginx()
    inputs = artifacts.gather_inputs(target.conn, project, spec, target.cache)
    release_id = inputs.artifact_id
    state = load_state(app)
    slot = "green" if state.slot == "blue" else "blue"
    stages = [
        PlannedStage(
            "test",
            notes=[
                f"run '{spec.tests.command}' in a clean venv"
                if spec.tests.enabled
                else "tests disabled"
            ],
        )
    ]
    built = artifacts.artifacts_dir(target.cache) / release_id / artifacts.MANIFEST
    stages.append(
        PlannedStage(
            "build",
            notes=[
                f"artifact {release_id}: "
                + (
                    "already built, reused"
                    if built.is_file()
                    else "build the app wheel, fill the wheel store, collect static"
                )
            ],
        )
    )
    install = PlannedStage("install")
    if is_installed(app, release_id):
        install.notes.append(f"release {release_id} is already installed")
    elif built.is_file():
        artifact = artifacts.load_artifact(built.parent)
        python = find_python(spec.python)
        store = artifacts.wheel_store(target.cache)
        if not layer_is_complete(app, layer_id(artifact, python)):
            install.steps = layer_steps(app, artifact, store, python)
        install.steps += install_steps(spec, app, artifact, store, python)
    else:
        install.notes.append(
            f"unpack into {app.release(release_id)}, make its venv offline "
            "from the wheel store, link persistent data"
        )
    stages.append(install)
    config = load_config(app)
    env = app_environment(spec, app, release_id, config)
    shown_env = {k: (MASK if k in config else v) for k, v in env.items()}
    configure = PlannedStage(
        "configure",
        files=[
            _change(target, Upload(render.env_file(shown_env), _p(app.env_file(slot)), 0o600)),
            _change(
                target,
                Upload(
                    render.program_conf(spec, app, release_id, slot, app.host.launcher).encode(),
                    _p(app.program_file(slot)),
                ),
            ),
        ],
    )
    static = {
        prefix: app.release(release_id) / "static" / f"{i}-{Path(d).name}"
        for i, (prefix, d) in enumerate(sorted(spec.static.items()))
    }
    site = render.site_conf(spec, app, release_id, slot, static, target.listen, nginx)
    configure.files.append(_change(target, Upload(site.encode(), _p(app.site_file))))
    stages.append(configure)
    switch = PlannedStage(
        "switch",
        notes=[
            *([f"run the release command: {spec.release}"] if spec.release else []),
            f"start {app.program('web', slot)} on {app.socket(slot)}",
            f"health check GET {spec.healthcheck.path} on that socket "
            f"(timeout {spec.healthcheck.timeout:g} s)",
            "nginx -t, graceful reload, wait for the old workers",
            f"check {listen_url(target.listen, spec.healthcheck.path)} answers from {release_id}",
            f"point {app.current} at releases/{release_id}",
            *([f"stop the old slot ({state.slot}, release {state.live})"] if state.live else []),
            f"prune releases beyond the newest {spec.keep}",
        ],
    )
    stages.append(switch)
    return Plan(spec.name, release_id, stages)


def _change(target: LocalTarget, upload: Upload) -> FileChange:
    before = (target.conn.read(upload.dest) or b"").decode(errors="replace")
    after = upload.content.decode(errors="replace")
    diff = "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{upload.dest} (now)",
            tofile=f"{upload.dest} (new)",
        )
    )
    return FileChange(upload.dest, diff)


def show_plan(plan: Plan, console: Console) -> None:
    console.print(
        f"[bold]deploy plan[/] for {escape(plan.app)}: release {plan.release} "
        "(dry run: nothing was changed)"
    )
    for number, stage in enumerate(plan.stages, 1):
        console.print(f"\n[bold]{number}. {stage.name}[/]")
        for note in stage.notes:
            console.print(f"   - {escape(note)}")
        for step in stage.steps:
            console.print(f"   $ {escape(str(step))}")
        for change in stage.files:
            if not change.diff:
                console.print(f"   = {change.path} (unchanged)")
                continue
            console.print(f"   ~ {change.path}")
            console.print(escape(change.diff.rstrip("\n")), style="dim")


def _p(path: Path) -> PurePosixPath:
    return PurePosixPath(path)
