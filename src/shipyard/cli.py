"""The command line: parse arguments, call the API, print. Nothing else lives here."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from shipyard import __version__
from shipyard import deploy as ops
from shipyard import logs as applogs
from shipyard.background import detach
from shipyard.errors import ShipyardError, UsageError
from shipyard.layout import AppLayout, default_cache_dir
from shipyard.spec import Spec, check_env_pair, load_spec
from shipyard.state import load_state
from shipyard.ui import Reporter, error_console, out_console

if TYPE_CHECKING:
    from shipyard.fleet import Fleet

F = TypeVar("F", bound=Callable[..., Any])

project_arg = click.argument(
    "project", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
target_opt = click.option("--target", "-t", default="local", show_default=True, help="Target name.")
wait_opt = click.option(
    "--wait",
    "lock_wait",
    type=click.FloatRange(0),
    default=ops.DEFAULT_LOCK_WAIT,
    show_default=True,
    help="Seconds to wait for another deploy of the app to finish.",
)


def _project(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(
            f"project directory {path} does not exist.",
            hint="Pass the directory that holds shipyard.toml (default: .).",
        )
    return path.resolve()


def _load(project: Path, target: str = "local") -> tuple[Path, Spec, ops.LocalTarget]:
    root = _project(project)
    spec = load_spec(root)
    return root, spec, ops.LocalTarget.for_spec(spec, target)


def _remote(project: Path, target: str) -> tuple[Path, Spec] | None:
    """(project, spec) when `target` is an ssh target; None for the local one."""
    root = _project(project)
    spec = load_spec(root)
    return (root, spec) if spec.target(target).type == "ssh" else None


def _finisher(app: AppLayout) -> ops.Finisher:
    """How the command finishes what it need not wait for: stopping the old slot once
    nginx's old workers are done. Run as the `shipyard` program, in a detached child that
    holds the app's lock until then; called with arguments (embedded, or by the tests),
    before returning."""
    context = click.get_current_context()
    if not (isinstance(context.obj, Options) and context.obj.detach):
        return ops.run_now
    return lambda work: detach(work, app.logs / "shipyard-background.log")


@contextmanager
def _fleet(root: Path, spec: Spec, target: str) -> Iterator[Fleet]:
    from shipyard.fleet import open_fleet

    with open_fleet(root, spec, target, default_cache_dir()) as fleet:
        yield fleet


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="shipyard")
def cli() -> None:
    """Deploy a Python web app behind nginx, under supervisor, with zero downtime."""


@cli.command()
@project_arg
@click.option("--yes", "-y", is_flag=True, help="Write shipyard.toml without asking.")
@click.option("--force", is_flag=True, help="Overwrite an existing shipyard.toml.")
def init(project: Path, yes: bool, force: bool) -> None:
    """Detect the app and write a commented shipyard.toml."""
    from shipyard.detect import detect
    from shipyard.initfile import render_spec_toml, write_spec

    root = _project(project)
    detected = detect(root)
    text = render_spec_toml(detected)
    if not yes:
        click.echo(text)
        if not sys.stdin.isatty() or not click.confirm(f"Write {root / 'shipyard.toml'}?"):
            click.echo("Nothing written (pass --yes to write it).", err=True)
            return
    path = write_spec(root, text, force=force)
    for note in detected.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {path}")


@cli.command()
@project_arg
@target_opt
def check(project: Path, target: str) -> None:
    """Validate the spec and the target's prerequisites."""
    from shipyard import runtime

    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        with _fleet(*remote, target) as fleet:
            problems = fleets.check_hosts(fleet)
        for host, problem in problems.items():
            click.echo(f"{host}: {problem or 'ready'}")
        if any(problems.values()):
            raise ShipyardError(
                f"{sum(1 for p in problems.values() if p)} host(s) of target {target} are not "
                "ready (see above).",
                hint=f"'shipyard provision {target}' installs what is missing.",
            )
        click.echo(f"{remote[0]}: spec OK (app {remote[1].name}, target {target})")
        return
    root, spec, local = _load(project, target)
    local.app(spec).check_socket_paths()
    runtime.find_nginx()
    click.echo(f"{root}: spec OK (app {spec.name}, entry {spec.entry}, target {target})")


@cli.command()
@project_arg
def build(project: Path) -> None:
    """Build the release artifact and print its id."""
    from shipyard.build import artifact as artifacts

    root, spec, local = _load(project)
    reporter = Reporter()
    with reporter.stage("build"):
        inputs = artifacts.gather_inputs(local.conn, root, spec, local.cache)
        built = artifacts.build(local.conn, root, spec, local.cache, inputs)
    reporter.note(f"{built.path}" + (" (unchanged)" if built.reused else ""))
    click.echo(built.id)


@cli.command(name="deploy")
@project_arg
@target_opt
@click.option("--skip-tests", is_flag=True, help="Deploy without running the tests (loudly).")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan and the diff of every file; change nothing."
)
@wait_opt
def deploy_cmd(
    project: Path, target: str, skip_tests: bool, dry_run: bool, lock_wait: float
) -> None:
    """Test, build, install, configure and switch to a new release."""
    if (remote := _remote(project, target)) is not None:
        if dry_run:
            raise UsageError(
                "--dry-run is for the local target; for hosts see 'provision --dry-run'."
            )
        from shipyard import fleet as fleets

        started = time.monotonic()
        with _fleet(*remote, target) as fleet:
            done = fleets.deploy(
                remote[0], remote[1], fleet, Reporter(), skip_tests=skip_tests, lock_wait=lock_wait
            )
        took = time.monotonic() - started
        click.echo(
            f"release {done.release} is live on {len(done.switched) + len(done.unchanged)} "
            f"host(s) ({len(done.unchanged)} already were); sent {done.sent_bytes} bytes "
            f"({took:.1f}s)",
            err=True,
        )
        click.echo(done.url)
        return
    root, spec, local = _load(project, target)
    if dry_run:
        from shipyard.plan import deploy_plan, show_plan

        show_plan(deploy_plan(root, spec, local), out_console())
        return
    started = time.monotonic()
    outcome = ops.deploy(
        root,
        spec,
        local,
        Reporter(),
        skip_tests=skip_tests,
        lock_wait=lock_wait,
        finish=_finisher(local.app(spec)),
    )
    took = time.monotonic() - started
    click.echo(f"release {outcome.release} is live at {local.url(spec)} ({took:.1f}s)", err=True)
    click.echo(local.url(spec))


@cli.command()
@project_arg
@target_opt
@click.option(
    "--to", "to", metavar="ID", help="Release id (or a unique prefix); default: the previous."
)
@wait_opt
def rollback(project: Path, target: str, to: str | None, lock_wait: float) -> None:
    """Switch back to an earlier release still on disk (no rebuild)."""
    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        started = time.monotonic()
        with _fleet(*remote, target) as fleet:
            back = fleets.rollback(remote[1], fleet, Reporter(), to, lock_wait)
        took = time.monotonic() - started
        click.echo(f"release {', '.join(back)} is live again on every host ({took:.2f}s)")
        return
    _, spec, local = _load(project, target)
    started = time.monotonic()
    outcome = ops.rollback(spec, local, Reporter(), to, lock_wait, _finisher(local.app(spec)))
    took = time.monotonic() - started
    click.echo(f"release {outcome.release} is live again ({took:.2f}s)")


@cli.command()
@project_arg
@target_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def releases(project: Path, target: str, as_json: bool) -> None:
    """List the app's releases."""
    from shipyard.release import installed_releases

    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        with _fleet(*remote, target) as fleet:
            per_host = fleets.releases(remote[1], fleet)
        if as_json:
            click.echo(json.dumps(per_host, indent=2))
            return
        table = Table("host", "", "release", "status", "deployed", "on disk")
        for host, rows in per_host.items():
            for row in rows:
                table.add_row(
                    host,
                    "*" if row["live"] else "",
                    row["id"],
                    row["status"],
                    row["deployed_at"],
                    "yes" if row["on_disk"] else "no",
                )
        out_console().print(table)
        return

    _, spec, local = _load(project, target)
    app = local.app(spec)
    state = load_state(app)
    on_disk = set(installed_releases(app))
    rows = [
        {**r.__dict__, "on_disk": r.id in on_disk, "live": r.id == state.live}
        for r in reversed(state.releases)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("", "release", "version", "git", "status", "deployed", "on disk")
    for row in rows:
        table.add_row(
            "*" if row["live"] else "",
            row["id"],
            row["version"],
            row["git_sha"],
            row["status"],
            row["deployed_at"],
            "yes" if row["on_disk"] else "no",
        )
    out_console().print(table)


@cli.command()
@project_arg
@target_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(project: Path, target: str, as_json: bool) -> None:
    """The live release, its processes and its health; exit 1 when not healthy."""
    from shipyard.status import app_status

    if (remote := _remote(project, target)) is not None:
        _fleet_status(remote, target, as_json)
        return
    _, spec, local = _load(project, target)
    report = app_status(spec, local)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        sys.exit(0 if report["healthy"] else 1)
    console = out_console()
    console.print(
        f"app [bold]{escape(spec.name)}[/] at {escape(report['url'])}: "
        f"{'[green]healthy[/]' if report['healthy'] else '[red]unhealthy[/]'} "
        f"({escape(report['health'])})"
    )
    console.print(f"live release: {report['release'] or 'none'} (slot {report['slot'] or '-'})")
    table = Table("process", "state", "pid", "description")
    for proc in report["processes"]:
        table.add_row(proc["name"], proc["state"], str(proc["pid"]), proc["description"])
    console.print(table)
    sys.exit(0 if report["healthy"] else 1)


@cli.command()
@project_arg
@target_opt
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--process", "-p", "process", help="web, a process name, access or error (nginx).")
@click.option("-n", "--lines", default=50, show_default=True, help="Lines to show from each log.")
def logs(project: Path, target: str, follow: bool, process: str | None, lines: int) -> None:
    """The app's output and nginx's access and error logs."""
    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        with _fleet(*remote, target) as fleet:
            fleets.follow_logs(remote[1], fleet, process, lines, follow, click.echo)
        return
    _, spec, local = _load(project, target)
    applogs.show(local.app(spec), spec, process, lines, follow, click.echo)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
@target_opt
@click.option("--host", "host_name", help="The host to run on (ssh targets; default: the first).")
def run(args: tuple[str, ...], target: str, host_name: str | None) -> None:
    """Run a one-off command in the live release's environment: shipyard run [DIR] -- CMD..."""
    project, command = _split_run_args(list(args))
    if (remote := _remote(project, target)) is not None:
        _run_remote(remote, target, host_name, command)
        return
    _, spec, local = _load(project, target)
    app = local.app(spec)
    argv = ops.run_argv(app, load_state(app), command, local.run_as)
    sys.stdout.flush()
    os.execv(argv[0], argv)


def _run_remote(
    remote: tuple[Path, Spec], target: str, host_name: str | None, command: list[str]
) -> None:
    from shipyard.fleet import sessions
    from shipyard.hosts.base import Command
    from shipyard.layout import HostLayout

    with _fleet(*remote, target) as fleet:
        names = [h.name for h in fleet.web]
        chosen = host_name or names[0]
        if chosen not in names:
            raise UsageError(
                f"--host {chosen!r} is not a web host of target {target}; hosts: "
                f"{', '.join(names)}."
            )
        host = next(h for h in fleet.web if h.name == chosen)
        with sessions(fleet, [host]) as agents:
            state = agents[host.name].call("state", app=remote[1].name)
        if not state["live"]:
            raise UsageError(f"app {remote[1].name} is not deployed on {chosen}.")
        layout = HostLayout(Path(str(host.base)))
        app = layout.app(remote[1].name)
        argv = host.conn.exec_argv(
            Command(
                (
                    *ops.as_user(host.app_user),
                    str(layout.launcher),
                    str(app.env_file(state["slot"])),
                    str(app.release(state["live"])),
                    *command,
                ),
                sudo=True,
            )
        )
    sys.stdout.flush()
    os.execvp(argv[0], argv)


def _fleet_status(remote: tuple[Path, Spec], target: str, as_json: bool) -> None:
    from shipyard import fleet as fleets

    with _fleet(*remote, target) as fleet:
        rows = fleets.status(remote[1], fleet)
    healthy = not any(
        "error" in row or (row["role"] == "web" and not row["healthy"]) for row in rows
    )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        sys.exit(0 if healthy else 1)
    table = Table("host", "role", "release", "health", "processes")
    for row in rows:
        if "error" in row:
            table.add_row(row["host"], row["role"], "-", f"[red]{escape(row['error'])}[/]", "")
            continue
        if row["role"] == "lb":
            table.add_row(row["host"], "lb", "-", "", f"agent {row.get('version', '')}")
            continue
        health = "[green]healthy[/]" if row["healthy"] else f"[red]{escape(row['health'])}[/]"
        procs = ", ".join(f"{p['name']} {p['state']}" for p in row["processes"])
        table.add_row(row["host"], "web", row["release"] or "none", health, escape(procs))
    out_console().print(table)
    sys.exit(0 if healthy else 1)


def _split_run_args(args: list[str]) -> tuple[Path, list[str]]:
    if "--" in args:
        cut = args.index("--")
        before, command = args[:cut], args[cut + 1 :]
    else:
        before, command = [], args
    if len(before) > 1:
        raise UsageError("usage: shipyard run [DIR] -- COMMAND [ARG...]")
    if not command:
        raise UsageError("no command given.", hint="Example: shipyard run -- flask routes")
    return Path(before[0]) if before else Path("."), command


@cli.group()
def config() -> None:
    """The app's environment variables and secrets."""


@config.command(name="set")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--dir", "project", default=".", type=click.Path(file_okay=False, path_type=Path))
@target_opt
def config_set(pairs: tuple[str, ...], project: Path, target: str) -> None:
    """Set variables; the app restarts with them, with zero downtime."""
    from shipyard.release import load_config

    _, spec, local = _load(project, target)
    app = local.app(spec)
    updates = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(
                f"{pair!r} is not KEY=VALUE.", hint="Example: shipyard config set DEBUG=0"
            )
        try:
            check_env_pair(key, value)
        except ValueError as err:
            raise UsageError(f"config set: {err}.") from None
        updates[key] = value
    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        with _fleet(*remote, target) as fleet:
            hosts = fleets.config_update(spec, fleet, lambda current: {**current, **updates})
        click.echo(f"set {', '.join(sorted(updates))} on {', '.join(hosts)}")
        return
    new = {**load_config(app), **updates}
    outcome = ops.restart(spec, local, Reporter(), config=new, action="config set")
    names = ", ".join(sorted(updates))
    click.echo(f"set {names}" + (f"; release {outcome.release} restarted" if outcome else ""))


@config.command(name="unset")
@click.argument("keys", nargs=-1, required=True)
@click.option("--dir", "project", default=".", type=click.Path(file_okay=False, path_type=Path))
@target_opt
def config_unset(keys: tuple[str, ...], project: Path, target: str) -> None:
    """Remove variables; the app restarts without them."""
    from shipyard.release import load_config

    _, spec, local = _load(project, target)
    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        def drop(current: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in current.items() if k not in keys}

        with _fleet(*remote, target) as fleet:
            hosts = fleets.config_update(spec, fleet, drop)
        click.echo(f"unset {', '.join(keys)} on {', '.join(hosts)}")
        return
    current = load_config(local.app(spec))
    missing = [k for k in keys if k not in current]
    if missing:
        raise UsageError(
            f"not set: {', '.join(missing)}.", hint="'shipyard config list' shows what is."
        )
    new = {k: v for k, v in current.items() if k not in keys}
    ops.restart(spec, local, Reporter(), config=new, action="config unset")
    click.echo(f"unset {', '.join(keys)}")


@config.command(name="list")
@click.option("--dir", "project", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--reveal", is_flag=True, help="Show the values (they are secrets).")
@click.option("--json", "as_json", is_flag=True)
@target_opt
def config_list(project: Path, reveal: bool, as_json: bool, target: str) -> None:
    """Show the variables (masked unless --reveal)."""
    from shipyard.hosts.base import MASK
    from shipyard.release import load_config

    _, spec, local = _load(project, target)
    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        with _fleet(*remote, target) as fleet:
            config = fleets.config_get(spec, fleet)
    else:
        config = load_config(local.app(spec))
    items = {
        **{k: (v, "spec") for k, v in spec.env.items()},
        **{k: (v, "config") for k, v in config.items()},
    }
    shown = {k: (v if reveal else MASK, src) for k, (v, src) in sorted(items.items())}
    if as_json:
        click.echo(
            json.dumps({k: {"value": v, "source": s} for k, (v, s) in shown.items()}, indent=2)
        )
        return
    for key, (value, source) in shown.items():
        click.echo(f"{key}={value}  # {source}")


@cli.command(name="start")
@project_arg
@target_opt
def start_cmd(project: Path, target: str) -> None:
    """Start the live release's processes."""
    if (remote := _remote(project, target)) is not None:
        done = _each_web(remote, target, "start")
        click.echo(
            "started " + "; ".join(f"{h}: {', '.join(r['processes'])}" for h, r in done.items())
        )
        return
    _, spec, local = _load(project, target)
    click.echo("started " + ", ".join(ops.start(spec, local)))


@cli.command(name="stop")
@project_arg
@target_opt
def stop_cmd(project: Path, target: str) -> None:
    """Stop the app's processes (nginx answers 502 until 'start')."""
    if (remote := _remote(project, target)) is not None:
        done = _each_web(remote, target, "stop")
        click.echo(
            "stopped "
            + "; ".join(f"{h}: {', '.join(r['processes']) or 'nothing'}" for h, r in done.items())
        )
        return
    _, spec, local = _load(project, target)
    stopped = ops.stop(spec, local)
    click.echo("stopped " + ", ".join(stopped) if stopped else "nothing was running")


@cli.command(name="restart")
@project_arg
@target_opt
@wait_opt
def restart_cmd(project: Path, target: str, lock_wait: float) -> None:
    """Restart with zero downtime (a fresh server on the other slot)."""
    if (remote := _remote(project, target)) is not None:
        done = _each_web(remote, target, "restart", wait=lock_wait)
        click.echo(f"restarted on {', '.join(done)}")
        return
    _, spec, local = _load(project, target)
    outcome = ops.restart(spec, local, Reporter(), lock_wait=lock_wait)
    if outcome is None:
        raise UsageError(f"app {spec.name} is not deployed.", hint="Run 'shipyard deploy'.")
    click.echo(f"release {outcome.release} restarted on slot {outcome.slot}")


@cli.command()
@project_arg
@target_opt
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--purge", is_flag=True, help="Also delete persistent data and config.")
def destroy(project: Path, target: str, yes: bool, purge: bool) -> None:
    """Remove the app from the target (data is kept unless --purge)."""
    _, spec, local = _load(project, target)
    if not yes and not (sys.stdin.isatty() and click.confirm(f"Destroy app {spec.name}?")):
        raise UsageError("not confirmed.", hint="Pass --yes to destroy without asking.")
    if (remote := _remote(project, target)) is not None:
        from shipyard import fleet as fleets

        with _fleet(*remote, target) as fleet:
            fleets.remove_from_lb(remote[1], fleet)
        done = _each_web(remote, target, "destroy", purge=purge)
        click.echo(
            f"destroyed {spec.name} on {', '.join(done)}" + ("" if purge else " (data kept)")
        )
        return
    ops.destroy(spec, local, purge)
    kept = "" if purge else f" (data kept in {local.app(spec).shared})"
    click.echo(f"destroyed {spec.name}{kept}")


def _each_web(remote: tuple[Path, Spec], target: str, op: str, **params: Any) -> dict[str, Any]:
    from shipyard import fleet as fleets

    with _fleet(*remote, target) as fleet:
        return fleets.each_web(remote[1], fleet, op, **params)


@cli.command()
@click.argument("target")
@click.option("--dir", "project", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Print what would be done on each host.")
def provision(target: str, project: Path, dry_run: bool) -> None:
    """Make an ssh target's hosts ready: nginx, python3-venv, the app user, shipyard's runtime."""
    remote = _remote(project, target)
    if remote is None:
        raise UsageError(
            f"target {target!r} is the local machine: nothing to provision.",
            hint="'shipyard deploy' sets up the local runtime by itself.",
        )
    from shipyard import fleet as fleets

    with _fleet(*remote, target) as fleet:
        done = fleets.provision_fleet(fleet, Reporter(), dry_run)
    for host, actions in done.items():
        if not actions:
            click.echo(f"{host}: already provisioned, nothing to do")
        for action in actions:
            click.echo(f"{host}: {'would ' if dry_run else ''}{action}")


@dataclass(frozen=True)
class Options:
    detach: bool  # finish the last steps in a detached child (see _finisher)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one handler turns every error into a paragraph and an exit code.

    `argv` None means this is the `shipyard` program itself (its arguments are sys.argv).
    """
    console = error_console()
    try:
        cli.main(args=argv, standalone_mode=False, obj=Options(detach=argv is None))
    except ShipyardError as err:
        console.print(f"[red bold]error:[/] {escape(err.message)}")
        if err.hint:
            console.print(escape(err.hint))
        sys.exit(err.exit_code)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        console.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception:
        path = _crash_log()
        console.print(
            f"[red bold]internal error[/] (a bug in shipyard): {escape(str(sys.exc_info()[1]))}"
        )
        console.print(f"The traceback is in {path}; please report it with that file.")
        sys.exit(70)
    sys.exit(0)


def _crash_log() -> Path:
    directory = default_cache_dir() / "crash"
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        directory = Path(tempfile.gettempdir())
    fd, name = tempfile.mkstemp(prefix="shipyard-crash-", suffix=".log", dir=directory)
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return Path(name)


if __name__ == "__main__":
    main()
