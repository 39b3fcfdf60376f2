"""What a deploy would do on this machine, read from it without changing it (--dry-run).

The same code answers for the local target and, through its agent, for each ssh host: it
reads the app's state, config and the files a deploy would rewrite, renders their new content
and returns the plan (plan.py) with the diff of each.
"""

from __future__ import annotations

import shlex
from pathlib import Path, PurePosixPath

from shipyard.host import render, tls
from shipyard.host.layout import AppLayout
from shipyard.host.lifecycle import Machine
from shipyard.host.nginx_workers import app_group
from shipyard.host.procman import SlotRun
from shipyard.host.programs import Instance
from shipyard.host.release import (
    app_environment,
    is_installed,
    load_config,
    planned_static_dirs,
)
from shipyard.host.render import units
from shipyard.host.render.units import UNIT_DIR
from shipyard.host.scale import load_scale, scaled
from shipyard.host.setup_command import setup_for
from shipyard.host.state import load_state
from shipyard.host.steps import Connection
from shipyard.host.switch import listen_url
from shipyard.plan import MASK, FileChange, Plan, PlannedStage, file_change, masked_env
from shipyard.spec.model import RESERVED_ENV, Spec


def host_plan(
    machine: Machine,
    spec: Spec,
    release_id: str,
    install_steps: list[str] | None,
    *,
    name: str = "local",
    earlier: list[PlannedStage] | None = None,
    release_cmd: bool = True,
    setup_on: str | None = None,
    tree: bool = False,
) -> Plan:
    """The plan for `release_id` here. `install_steps`: the steps that would install it, when
    the deploying machine knows them (its artifact is built); None: described in words.
    `release_cmd` and `setup_on`: as for lifecycle.stage (a fleet's release host, and the
    host the target's setup is done on)."""
    app = machine.app(spec)
    app.check_socket_paths()
    nginx = machine.servers.find_nginx(machine.conn.host)
    state = load_state(app)
    slot = state.idle_slot()
    setup = setup_for(
        app, spec.setup, state.live, release_id, release_cmd=release_cmd, setup_on=setup_on
    )
    install = PlannedStage(name="install")
    if is_installed(app, release_id):
        install.notes.append(f"release {release_id} is already installed")
    elif install_steps is not None:
        install.steps = install_steps
    else:
        install.notes.append(
            f"unpack into {app.release(release_id)}, make its venv offline "
            "from the wheel store, link persistent data"
        )
    config = load_config(app)
    env = app_environment(spec, app, release_id, config, tree)
    # the spec's env and shipyard's own: no secrets
    shown = {key: value for key, value in env.items() if key not in config}
    static = planned_static_dirs(spec, app, release_id, state.live)
    scale = load_scale(app)  # the deploy runs with the host's `shipyard scale` counts
    site = render.site_conf(
        spec,
        app,
        release_id,
        slot,
        static,
        machine.listen,
        nginx,
        tls.site(app),
        tls.behind_lb(app),
    )
    run = SlotRun(scaled(spec, scale), release_id, slot, tree, scale.get("web"))
    configure = PlannedStage(
        name="configure",
        files=[
            _change(
                machine.conn,
                app.env_file(slot),
                render.env_file(masked_env(env, set(config))),
                shown,
                # a retired slot's env file is gone: the change is from the live one's
                instead=app.env_file(state.slot) if state.slot and state.slot != slot else None,
            ),
            *_process_files(machine, app, run),
            _change(machine.conn, app.site_file, site.encode()),
        ],
    )
    switch = PlannedStage(
        name="switch",
        notes=[
            *([setup.note] if setup.note else []),
            *([f"run the release command: {spec.release}"] if spec.release and release_cmd else []),
            f"start {_web_name(machine, app, slot)} on {app.socket(slot)}",
            f"health check GET {spec.healthcheck.request_path} on that socket "
            f"(timeout {spec.healthcheck.timeout:g} s)",
            "nginx -t, graceful reload, wait for the old workers",
            f"check {listen_url(machine.listen, spec.healthcheck.request_path)} answers from "
            f"{release_id}",
            f"point {app.current} at releases/{release_id}",
            *([f"stop the old slot ({state.slot}, release {state.live})"] if state.live else []),
            f"prune releases beyond the newest {spec.keep}",
        ],
    )
    stages = [*(earlier or []), install, configure, switch]
    return Plan(app=spec.name, host=name, release=release_id, stages=stages)


def _web_name(machine: Machine, app: AppLayout, slot: str) -> str:
    if machine.process_manager == "systemd":
        return units.unit_name(app.name, Instance("web", "web"), slot)
    return app.program("web", slot)


def _process_files(machine: Machine, app: AppLayout, run: SlotRun) -> list[FileChange]:
    """The slot's supervisor program file, or its systemd units."""
    if machine.process_manager == "systemd":
        return [
            _change(machine.conn, Path(UNIT_DIR / file.name), file.content.encode())
            for file in units.slot_files(
                run.spec,
                app,
                run.release_id,
                run.slot,
                launcher=app.host.launcher,
                user=machine.run_as or "root",
                group=app_group(machine.run_as or "root"),
                tree=run.tree,
                workers=run.workers,
            )
        ]
    program = render.program_conf(
        run.spec,
        app,
        run.release_id,
        run.slot,
        app.host.launcher,
        machine.run_as,
        run.tree,
        run.workers,
    )
    return [_change(machine.conn, app.program_file(run.slot), program.encode())]


def _change(
    conn: Connection,
    path: Path,
    new: bytes,
    env_shown: dict[str, str] | None = None,
    instead: Path | None = None,
) -> FileChange:
    """The change to `path`, read over the machine's connection like every other file.
    `env_shown`: `path` is an env file, whose values but these public ones are masked.
    `instead`: the file to diff against when `path` is absent."""
    before, was = _read(conn, path), None
    if before is None and instead is not None:
        before, was = _read(conn, instead), str(instead)
    if before is not None and env_shown is not None:
        before = _mask_env_file(before, env_shown)
    return file_change(str(path), before, new, was if before is not None else None)


def _read(conn: Connection, path: Path) -> bytes | None:
    try:
        return conn.read(PurePosixPath(path))
    except PermissionError:
        return b"(not readable here)\n"


def _mask_env_file(content: bytes, shown: dict[str, str]) -> bytes:
    """An env file as it is now, with every value masked but those the new env shows openly
    as they are: whatever else it holds may be a secret (a config key's; one unset since, or
    one that overrode the spec's public default)."""
    lines = []
    rest = iter(content.decode(errors="replace").splitlines())
    for line in rest:
        key, sep, value = line.partition("=")
        # a quoted value with newlines (a PEM key, say) goes on over the lines that follow
        while sep and not _closed(value) and (more := next(rest, None)) is not None:
            value, line = f"{value}\n{more}", f"{line}\n{more}"
        # shipyard's own variables (the spec may not set them) are never secrets
        public = sep and (key.strip() in RESERVED_ENV or _unquoted(value) == shown.get(key.strip()))
        lines.append(f"{key}={shlex.quote(MASK)}" if sep and not public else line)
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _unquoted(value: str) -> str | None:
    try:
        words = shlex.split(value)
    except ValueError:
        return None
    return words[0] if len(words) == 1 else None


def _closed(value: str) -> bool:
    """Whether a value as render.env_file quotes it ends on this line."""
    try:
        shlex.split(value)
    except ValueError:  # no closing quotation: it goes on
        return False
    return True
