"""The commands: parse arguments, call a Target, hand its typed result to a view."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from shipyard import __version__
from shipyard.cli import views
from shipyard.cli.options import PlainPath
from shipyard.cli.ui import Reporter
from shipyard.errors import ShipyardError, Terminated, UsageError
from shipyard.targets.dirs import default_cache_dir

# The spec's models, the targets and what they import cost most of the start-up: each
# command imports them when it runs, so --help, --version and init do without them.
if TYPE_CHECKING:
    from shipyard.spec.model import Spec
    from shipyard.targets.base import Background, Target

DEFAULT_LOCK_WAIT = 120.0


project_arg = click.argument(
    "project", required=False, default=".", type=PlainPath(file_okay=False, path_type=Path)
)
dir_opt = click.option(
    "--dir", "project", default=".", type=PlainPath(file_okay=False, path_type=Path)
)
target_opt = click.option("--target", "-t", default="local", show_default=True, help="Target name.")
wait_opt = click.option(
    "--wait",
    "lock_wait",
    type=click.FloatRange(0),
    default=DEFAULT_LOCK_WAIT,
    show_default=True,
    help="Seconds to wait for another deploy of the app to finish.",
)


@dataclass(frozen=True)
class Options:
    detach: bool  # finish the last steps in a detached child (see _background)


def _project(path: Path) -> Path:
    if not path.is_dir():
        raise UsageError(
            f"project directory {path} does not exist.",
            hint="Pass the directory that holds shipyard.toml (default: .).",
        )
    return path.resolve()


def _background() -> Background | None:
    """How a command finishes what it need not wait for (stopping the old slot once nginx's
    old workers are done): as the `shipyard` program, in a detached child that holds the
    app's lock until then; called with arguments (embedded, or by the tests), before
    returning."""
    context = click.get_current_context()
    if not (isinstance(context.obj, Options) and context.obj.detach):
        return None
    from shipyard.host.background import detach

    return lambda work, log: detach(work, Path(log))


@contextmanager
def _target(project: Path, name: str) -> Iterator[Target]:
    from shipyard.project.spec_file import load_spec
    from shipyard.targets import open_target

    root = _project(project)
    spec = load_spec(root)
    target = open_target(root, spec, name, default_cache_dir(), _background())
    try:
        yield target
    finally:
        target.close()


def _spec(project: Path) -> tuple[Path, Spec]:
    from shipyard.project.spec_file import load_spec

    root = _project(project)
    return root, load_spec(root)


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
    from shipyard.project.detect import detect
    from shipyard.project.initfile import init_summary, render_spec_toml, write_spec

    root = _project(project)
    detected = detect(root)
    text = render_spec_toml(detected)
    if not yes:
        click.echo(text)
        if not sys.stdin.isatty() or not click.confirm(f"Write {root / 'shipyard.toml'}?"):
            click.echo("Nothing written (pass --yes to write it).", err=True)
            return
    path = write_spec(root, text, force=force)
    for line in init_summary(detected):
        click.echo(line, err=True)
    click.echo(f"wrote {path}")


@cli.command()
@project_arg
@target_opt
def check(project: Path, target: str) -> None:
    """Validate the spec and the target's prerequisites."""
    with _target(project, target) as opened:
        checked = opened.check()
    views.checked(checked, _project(project))


@cli.command()
@project_arg
def build(project: Path) -> None:
    """Build the release artifact and print its id."""
    from shipyard.build import artifact as artifacts
    from shipyard.host.local import LocalConnection

    root, spec = _spec(project)
    reporter = Reporter()
    cache = default_cache_dir()
    with reporter.stage("build"):
        inputs = artifacts.gather_inputs(LocalConnection(), root, spec, cache)
        built = artifacts.build(LocalConnection(), root, spec, cache, inputs)
    reporter.note(
        f"{built.path}: {built.manifest.holds}" + (" (unchanged)" if built.reused else "")
    )
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
    with _target(project, target) as opened:
        if dry_run:
            views.plans(opened.plan(skip_tests=skip_tests))
            return
        started = time.monotonic()
        done = opened.deploy(Reporter(), skip_tests=skip_tests, lock_wait=lock_wait)
    views.deployed(done, time.monotonic() - started)


@cli.command()
@project_arg
@target_opt
@click.option(
    "--to", "to", metavar="ID", help="Release id (or a unique prefix); default: the previous."
)
@wait_opt
def rollback(project: Path, target: str, to: str | None, lock_wait: float) -> None:
    """Switch back to an earlier release still on disk (no rebuild)."""
    with _target(project, target) as opened:
        started = time.monotonic()
        back = opened.rollback(Reporter(), to=to, lock_wait=lock_wait)
    views.rolled_back(back, time.monotonic() - started)


@cli.command()
@project_arg
@target_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def releases(project: Path, target: str, as_json: bool) -> None:
    """List the app's releases."""
    with _target(project, target) as opened:
        found = opened.releases()
    views.releases(found, as_json)


@cli.command()
@click.argument("counts", nargs=-1, required=True, metavar="NAME=N...")
@dir_opt
@target_opt
@wait_opt
def scale(counts: tuple[str, ...], project: Path, target: str, lock_wait: float) -> None:
    """Set how many of each process run, e.g. `scale worker=3 web=2` (web: the app server's
    workers, restarted with zero downtime); kept across deploys."""
    changes: dict[str, int] = {}
    for item in counts:
        name, sep, count = item.partition("=")
        if not sep or not name or not count.isdigit():
            raise UsageError(
                f"cannot read {item!r} as a count.",
                hint="Give NAME=N pairs: 'shipyard scale web=2 worker=3'.",
            )
        changes[name] = int(count)
    with _target(project, target) as opened:
        views.scaled(opened.scale(Reporter(), changes, lock_wait=lock_wait))


@cli.command()
@project_arg
@target_opt
@click.option(
    "-o", "--output", type=PlainPath(dir_okay=False, path_type=Path), help="Write to FILE."
)
@click.option("--hashes", is_flag=True, help="Add each wheel's --hash=sha256 (pip's hash mode).")
@click.option("--host", "host_name", help="The host to ask (ssh targets; when they differ).")
def freeze(
    project: Path, target: str, output: Path | None, hashes: bool, host_name: str | None
) -> None:
    """The live release's exact pins, as a requirements.txt (pip freeze of what runs)."""
    with _target(project, target) as opened:
        found = opened.freeze()
    text = views.frozen(found, hashes=hashes, host=host_name)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot write {output}: {err.strerror}.") from None
    views.frozen_written(found, output, host_name)


@cli.command()
@project_arg
@target_opt
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(project: Path, target: str, as_json: bool) -> None:
    """The live release, its processes and its health; exit 1 when not healthy."""
    with _target(project, target) as opened:
        report = opened.status()
    views.status(report, as_json)
    sys.exit(0 if report.healthy else 1)


@cli.command()
@project_arg
@target_opt
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@click.option("--process", "-p", "process", help="web, a process name, access or error (nginx).")
@click.option("-n", "--lines", default=50, show_default=True, help="Lines to show from each log.")
def logs(project: Path, target: str, follow: bool, process: str | None, lines: int) -> None:
    """The app's output and nginx's access and error logs."""
    with _target(project, target) as opened:
        opened.logs(process, lines, follow, click.echo)


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, type=click.UNPROCESSED, required=True)
@target_opt
@click.option("--host", "host_name", help="The host to run on (ssh targets; default: the first).")
def run(args: tuple[str, ...], target: str, host_name: str | None) -> None:
    """Run a one-off command in the live release's environment: shipyard run [DIR] -- CMD..."""
    project, command = _split_run_args(list(args))
    with _target(project, target) as opened:
        argv = opened.run_argv(command, host_name)
    from shipyard.cli import warm

    if warm.hand_over(argv):  # a warm child: the launcher's own process becomes the command
        return
    sys.stdout.flush()
    os.execvp(argv[0], argv)


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
@dir_opt
@target_opt
def config_set(pairs: tuple[str, ...], project: Path, target: str) -> None:
    """Set variables; the app restarts with them, with zero downtime.

    A lone KEY takes its value from stdin, or from a prompt that does not echo it, so a
    secret is never on a command line (where `ps` and shell history would show it)."""
    from shipyard.spec.model import check_env_pair

    updates = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            if len(pairs) > 1:
                raise UsageError(
                    f"{pair!r} is not KEY=VALUE.",
                    hint="Give KEY=VALUE pairs, or a single KEY alone to read its value from "
                    'stdin: printf %s "$TOKEN" | shipyard config set API_TOKEN',
                )
            try:
                check_env_pair(key, "")  # the name, before asking for its value
            except ValueError as err:
                raise UsageError(f"config set: {err}.") from None
            value = _secret_value(key)
        try:
            check_env_pair(key, value)
        except ValueError as err:
            raise UsageError(f"config set: {err}.") from None
        updates[key] = value
    with _target(project, target) as opened:
        changed = opened.config_set(Reporter(), updates)
    views.config_changed("set", changed)


def _secret_value(key: str) -> str:
    """KEY's value from a prompt that does not echo (a terminal), else all of stdin without
    its final newline."""
    if sys.stdin.isatty():
        value: str = click.prompt(f"Value of {key}", hide_input=True, err=True)
        return value
    try:
        value = sys.stdin.read().removesuffix("\n")
    except (OSError, UnicodeDecodeError):
        value = ""
    if not value:
        raise UsageError(
            f"no value for {key} on stdin.",
            hint=f'Pipe it in (printf %s "$VALUE" | shipyard config set {key}), or give '
            f"{key}=VALUE.",
        )
    return value


@config.command(name="unset")
@click.argument("keys", nargs=-1, required=True)
@dir_opt
@target_opt
def config_unset(keys: tuple[str, ...], project: Path, target: str) -> None:
    """Remove variables; the app restarts without them."""
    with _target(project, target) as opened:
        changed = opened.config_unset(Reporter(), list(keys))
    views.config_changed("unset", changed)


@config.command(name="list")
@dir_opt
@click.option("--reveal", is_flag=True, help="Show the values (they are secrets).")
@click.option("--json", "as_json", is_flag=True)
@target_opt
def config_list(project: Path, reveal: bool, as_json: bool, target: str) -> None:
    """Show the variables (masked unless --reveal)."""
    with _target(project, target) as opened:
        found = opened.config_get()
        views.config_list(opened.spec.env, found, reveal, as_json)


@cli.command(name="start")
@project_arg
@target_opt
def start_cmd(project: Path, target: str) -> None:
    """Start the live release's processes."""
    with _target(project, target) as opened:
        views.processes("started", opened.start())


@cli.command(name="stop")
@project_arg
@target_opt
def stop_cmd(project: Path, target: str) -> None:
    """Stop the app's processes (nginx answers 502 until 'start')."""
    with _target(project, target) as opened:
        views.processes("stopped", opened.stop())


@cli.command(name="restart")
@project_arg
@target_opt
@wait_opt
def restart_cmd(project: Path, target: str, lock_wait: float) -> None:
    """Restart with zero downtime (a fresh server on the other slot)."""
    with _target(project, target) as opened:
        views.restarted(opened.restart(Reporter(), lock_wait=lock_wait))


@cli.command()
@project_arg
@target_opt
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--purge", is_flag=True, help="Also delete persistent data and config.")
def destroy(project: Path, target: str, yes: bool, purge: bool) -> None:
    """Remove the app from the target (data is kept unless --purge)."""
    with _target(project, target) as opened:
        name = opened.spec.name
        if not yes and not (sys.stdin.isatty() and click.confirm(f"Destroy app {name}?")):
            raise UsageError("not confirmed.", hint="Pass --yes to destroy without asking.")
        views.destroyed(opened.destroy(purge=purge))


@cli.group()
def tls() -> None:
    """HTTPS certificates ([tls] in the spec; docs/tls.md)."""


@tls.command(name="renew")
@project_arg
@target_opt
@click.option("--force", is_flag=True, help="Renew now, however long the certificate has left.")
@wait_opt
def tls_renew(project: Path, target: str, force: bool, lock_wait: float) -> None:
    """Renew the ACME certificate (when under 30 days left, or now with --force) and reload
    nginx gracefully; the host's renewal loop does the same twice a day."""
    with _target(project, target) as opened:
        views.tls_renewed(opened.tls_renew(force=force, lock_wait=lock_wait))


@cli.command()
@click.argument("target")
@dir_opt
@click.option("--dry-run", is_flag=True, help="Print what would be done on each host.")
def provision(target: str, project: Path, dry_run: bool) -> None:
    """Make an ssh target's hosts ready: nginx, python3-venv, the app user, shipyard's runtime."""
    with _target(project, target) as opened:
        views.provisioned(opened.provision(Reporter(), dry_run=dry_run))


def _register_groups() -> None:
    from shipyard.cli.export import export

    cli.add_command(export)


_register_groups()

TERMINATING = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM and SIGHUP stop the command as Ctrl-C does; one more while it cleans up (a
    switch going back, say) is ignored, so that the cleanup finishes (SIGKILL still stops
    it, and the next command on the app recovers what it left)."""
    for other in TERMINATING:
        signal.signal(other, signal.SIG_IGN)
    raise Terminated(signum)


def _terminated(stop: Terminated) -> NoReturn:
    views.error(
        f"terminated by {signal.Signals(stop.signum).name}.",
        "A switch of traffic under way was switched back: the release that served keeps "
        "serving. One already recorded is finished by the app's next command ('shipyard "
        "status' shows what serves).",
    )
    sys.exit(128 + stop.signum)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one handler turns every error into a paragraph and an exit code.

    `argv` None means this is the `shipyard` program itself (its arguments are sys.argv);
    only then do SIGTERM and SIGHUP become `Terminated`.
    """
    if argv is None:
        for signum in TERMINATING:
            signal.signal(signum, _terminate)
    try:
        cli.main(args=argv, standalone_mode=False, obj=Options(detach=argv is None))
    except ShipyardError as err:
        views.error(err.message, err.hint)
        sys.exit(err.exit_code)
    except click.exceptions.Exit as exit_:
        sys.exit(exit_.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Abort as abort:
        if isinstance(abort.__cause__, Terminated):  # click turns an interruption into Abort
            _terminated(abort.__cause__)
        views.error_line("aborted")
        sys.exit(130)
    except Terminated as stop:
        _terminated(stop)
    except KeyboardInterrupt:
        views.error_line("interrupted")
        sys.exit(130)
    except Exception as exc:
        from shipyard.host.diskspace import disk_full

        if (full := disk_full(exc)) is not None:
            views.error(full.message, full.hint)
            sys.exit(full.exit_code)
        views.internal_error(exc)
        sys.exit(70)
    sys.exit(0)
