"""systemd units of an app: a template unit per process type, a drop-in per slot's instance.

`<app>-web@.service` is instantiated per slot (`<app>-web@blue`, `<app>-web@green`), each
instance bound to its slot's socket, like the supervisor programs of the two slots. What
belongs to a release (its directory, its command, its stop signal and timeout) comes in
the instance's drop-in, `<app>-web@blue.service.d/release.conf`, so that the two slots run
different releases side by side; the template holds the user and the hardening.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.host import programs
from shipyard.host.layout import AppLayout
from shipyard.host.render import _render, server_argv
from shipyard.spec.model import ServerType, Spec

UNIT_DIR = PurePosixPath("/etc/systemd/system")
DROPIN = "release.conf"
# ProtectHome=yes hides these; an app whose base directory is under one of them would not
# find its own release
HOME_DIRS = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))


@dataclass(frozen=True)
class UnitFile:
    """A file under the unit directory: `name` is relative to it."""

    name: PurePosixPath
    content: str


def template_name(app: str, kind: str) -> str:
    return f"{app}-{kind}@.service"


def unit_name(app: str, instance: programs.Instance, slot: str) -> str:
    """`<app>-web@blue.service`; an extra process's instances are numbered after the slot
    as its supervisor programs are (`<app>-worker@blue`, `<app>-worker@blue-1`, ...)."""
    number = instance.name.removeprefix(instance.kind)
    return f"{app}-{instance.kind}@{slot}{number}.service"


def slot_units(spec: Spec, app: AppLayout, slot: str) -> list[str]:
    """The units of a slot, web first, as programs.slot_programs names its programs."""
    return [unit_name(app.name, i, slot) for i in programs.instances(spec)]


def is_apps(app: str, unit: str) -> bool:
    """A unit (or template) of this app, not of another whose name begins like this one's:
    a process name has no '-', so the app's name is all before the last '-'."""
    return unit.partition("@")[0].rpartition("-")[0] == app


def slot_instances(app: str, slot: str, names: Iterable[str]) -> list[str]:
    """The units among `names` that are instances of this app's on `slot`."""
    return [
        name
        for name in names
        if is_apps(app, name)
        and name.removesuffix(".service").partition("@")[2].partition("-")[0] == slot
    ]


def writable_paths(app: AppLayout) -> list[str]:
    """What the app may write under ProtectSystem=strict: its data (persistent directories
    and files live there), sockets, logs, Flask's instance folder and Django's uploads
    (the last one made only for Django apps: `-` lets it be absent)."""
    return [str(app.data), str(app.run), str(app.logs), str(app.var), f"-{app.media}"]


def protect_home(base: Path) -> str:
    """`yes` hides /home, /root and /run/user; an app based under one of them gets them
    read-only instead, its writable paths still writable (ReadWritePaths= is applied over
    it)."""
    path = PurePosixPath(base)
    return "read-only" if any(path.is_relative_to(home) for home in HOME_DIRS) else "yes"


def template_unit(app: AppLayout, kind: str, user: str, group: str) -> str:
    return _render(
        "systemd-template.service.j2",
        app=app.name,
        kind=kind,
        example=f"{app.name}-{kind}@blue.service",
        user=user,
        group=group,
        writable=writable_paths(app),
        protect_home=protect_home(app.host.base),
    )


def release_dropin(
    spec: Spec,
    app: AppLayout,
    release_id: str,
    slot: str,
    instance: programs.Instance,
    launcher: Path,
    tree: bool = False,
    workers: int | None = None,
) -> str:
    """One instance's release: the same command, directory and environment as its
    supervisor program (render.program_conf), and the same stop signal and timeout."""
    workdir = app.workdir(release_id, tree)
    venv = app.venv(release_id)
    prefix = (str(launcher), str(app.env_file(slot)), str(workdir))
    if instance.kind == "web":
        argv = (*prefix, *server_argv(spec, app, release_id, slot, workers))
        # uWSGI stops gracefully on INT (TERM reloads it); every other server on TERM
        signal = "SIGINT" if spec.server.type is ServerType.UWSGI else "SIGTERM"
    else:
        argv = (*prefix, *shlex.split(spec.processes[instance.kind].command))
        signal = "SIGTERM"
    environment = {
        "PATH": f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(app.shared),
    }
    return _render(
        "systemd-release.conf.j2",
        app=spec.name,
        name=instance.name,
        release=release_id,
        slot=slot,
        directory=_unit_path(str(workdir)),
        environment=" ".join(_quoted(f"{k}={v}", expand=False) for k, v in environment.items()),
        command=exec_line(argv),
        kill_signal=signal,
        stop_timeout=spec.server.graceful_timeout + 5,
    )


def slot_files(
    spec: Spec,
    app: AppLayout,
    release_id: str,
    slot: str,
    *,
    launcher: Path,
    user: str,
    group: str,
    tree: bool = False,
    workers: int | None = None,
) -> list[UnitFile]:
    """Every file a slot's units need: the templates of its process types, and the
    release drop-in of each instance."""
    files: dict[PurePosixPath, str] = {}
    for instance in programs.instances(spec):
        template = template_name(app.name, instance.kind)
        files[PurePosixPath(template)] = template_unit(app, instance.kind, user, group)
        dropin = PurePosixPath(f"{unit_name(app.name, instance, slot)}.d") / DROPIN
        files[dropin] = release_dropin(
            spec, app, release_id, slot, instance, launcher, tree, workers
        )
    return [UnitFile(name, content) for name, content in files.items()]


# What systemd takes as a bare word of a command line: no quote, space, backslash,
# specifier (%) or variable ($) to escape
_BARE = re.compile(r"^[A-Za-z0-9_@+=:,./-]+$")


def exec_line(argv: tuple[str, ...]) -> str:
    """An ExecStart= value that systemd splits back into exactly `argv`: `%` (its
    specifiers) and `$` (its variables) are doubled, and a word with anything but plain
    characters is double-quoted with C escapes."""
    return " ".join(word if _BARE.match(word) else _quoted(word, expand=True) for word in argv)


def _quoted(word: str, *, expand: bool) -> str:
    escaped = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    escaped = escaped.replace("%", "%%")
    if expand:  # ExecStart= expands $VAR; Environment= does not
        escaped = escaped.replace("$", "$$")
    return f'"{escaped}"'


def _unit_path(path: str) -> str:
    """A path in a unit file: specifiers escaped (systemd expands them in paths too)."""
    return path.replace("%", "%%")
