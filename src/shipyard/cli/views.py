"""How each typed result of a Target is shown: one function per result, text or --json."""

from __future__ import annotations

import json
import os
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shipyard.cli.ui import error_console, escape, out_console
from shipyard.errors import ShipyardError, UsageError
from shipyard.targets.dirs import default_cache_dir

if TYPE_CHECKING:  # the results' modules import pydantic; a view only reads their fields
    from shipyard.plan import Plan
    from shipyard.targets.base import (
        Checked,
        ConfigChanged,
        Deployed,
        Destroyed,
        Frozen,
        HostReleases,
        ProcessesChanged,
        Provisioned,
        Restarted,
        RolledBack,
        Scaled,
        Status,
        TlsRenewed,
    )
    from shipyard.targets.export.container import ContainerContext
    from shipyard.targets.export.write import Written


def _per_host(hosts: dict[str, list[str]], empty: str) -> str:
    """`a, b` for one host; `h1: a, b; h2: c` for several."""
    if len(hosts) == 1:
        return ", ".join(next(iter(hosts.values()))) or empty
    return "; ".join(f"{host}: {', '.join(names) or empty}" for host, names in hosts.items())


def checked(result: Checked, project: Path) -> None:
    fleet = len(result.hosts) > 1 or result.hosts[0].host != "local"
    if fleet:
        for host in result.hosts:
            click.echo(f"{host.host}: {host.problem or 'ready'}")
    bad = [host for host in result.hosts if host.problem]
    if bad:
        raise ShipyardError(
            f"{len(bad)} host(s) of target {result.target} are not ready (see above).",
            hint=f"'shipyard provision {result.target}' installs what is missing.",
        )
    click.echo(
        f"{project}: spec OK (app {result.app}, entry {result.entry}, target {result.target})"
    )


def plans(found: list[Plan]) -> None:
    console = out_console()
    for plan in found:
        where = f" on {plan.host}" if plan.host else ""
        console.print(
            f"[bold]deploy plan[/] for {escape(plan.app)}{escape(where)}: release {plan.release} "
            "(dry run: nothing was changed)"
        )
        for number, stage in enumerate(plan.stages, 1):
            console.print(f"\n[bold]{number}. {escape(stage.name)}[/]")
            for note in stage.notes:
                console.print(f"   - {escape(note)}")
            for step in stage.steps:
                console.print(f"   $ {escape(step)}")
            for change in stage.files:
                if not change.diff:
                    console.print(f"   = {escape(change.path)} (unchanged)")
                    continue
                console.print(f"   ~ {escape(change.path)}")
                console.print(escape(change.diff.rstrip("\n")), style="dim")
        console.print()


def deployed(result: Deployed, took: float) -> None:
    hosts = len(result.switched) + len(result.unchanged)
    already = f" ({len(result.unchanged)} already were)" if result.unchanged else ""
    sent = f"; sent {result.sent_bytes} bytes" if result.sent_bytes else ""
    click.echo(
        f"release {result.release} is live at {result.url} on {hosts} host(s){already}{sent} "
        f"({took:.1f}s)",
        err=True,
    )
    click.echo(result.url)


def rolled_back(result: RolledBack, took: float) -> None:
    click.echo(
        f"release {', '.join(result.releases)} is live again on {', '.join(result.hosts)} "
        f"({took:.2f}s)"
    )


def restarted(result: Restarted) -> None:
    where = f"slot {result.slot}" if result.slot else ", ".join(result.hosts)
    click.echo(f"release {result.release} restarted on {where}")


def scaled(result: Scaled) -> None:
    counts = " ".join(f"{k}={v}" for k, v in sorted(result.scale.items()))
    restarted = f"; release {result.restarted} restarted" if result.restarted else ""
    click.echo(f"scale {counts} on {', '.join(result.hosts)}{restarted}")


def releases(found: list[HostReleases], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([asdict(host) for host in found], indent=2))
        return
    from rich.table import Table

    table = Table("host", "", "release", "version", "git", "status", "deployed", "on disk")
    for host in found:
        for row in host.releases:
            table.add_row(
                host.host,
                "*" if row.live else "",
                row.id,
                row.version,
                row.git_sha,
                row.status,
                row.deployed_at,
                "yes" if row.on_disk else "no",
            )
    out_console().print(table)


def _one_frozen(found: list[Frozen], host: str | None) -> Frozen:
    """The release whose pins to show: the one every host runs, or the one --host names."""
    if host is not None:
        chosen = [f for f in found if f.host == host]
        if not chosen:
            raise UsageError(
                f"--host {host!r} is not a web host of the target.",
                hint=f"Its web hosts: {', '.join(f.host for f in found)}.",
            )
        return chosen[0]
    if len({(f.release, tuple(f.pins)) for f in found}) > 1:
        live = ", ".join(f"{f.host}: {f.release}" for f in found)
        raise UsageError(
            f"the hosts run different releases ({live}).",
            hint="Pass --host to freeze one of them, or deploy so that they agree.",
        )
    return found[0]


def frozen(found: list[Frozen], *, hashes: bool, host: str | None) -> str:
    """A requirements.txt of the live release: name==version, sorted, with hashes if asked."""
    one = _one_frozen(found, host)
    lines = [f"# the live release {one.release} (shipyard freeze)"]
    for pin in one.pins:
        lines.append(f"{pin} \\\n    --hash=sha256:{pin.sha256}" if hashes else str(pin))
    return "\n".join(lines) + "\n"


def frozen_written(found: list[Frozen], output: Path, host: str | None) -> None:
    one = _one_frozen(found, host)
    error_console().print(
        f"wrote {escape(str(output))}: {len(one.pins)} pins of release {escape(one.release)}"
    )


def status(report: Status, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**asdict(report), "healthy": report.healthy}, indent=2))
        return
    from rich.table import Table

    console = out_console()
    console.print(
        f"app [bold]{escape(report.app)}[/] at {escape(report.url)} (target "
        f"{escape(report.target)}): "
        + ("[green]healthy[/]" if report.healthy else "[red]unhealthy[/]")
    )
    hosts = Table("host", "role", "release", "slot", "health")
    for host in report.hosts:
        if host.error is not None:
            hosts.add_row(host.host, host.role, "-", "-", f"[red]{escape(host.error)}[/]")
        elif host.role == "lb":
            hosts.add_row(host.host, "lb", "-", "-", f"agent {escape(host.agent_version)}")
        else:
            health = "[green]healthy[/]" if host.healthy else "[red]unhealthy[/]"
            if host.healthy and host.runtime:
                health = "[yellow]serves, but its runtime is broken[/]"
            if host.down:
                down = ", ".join(f"{p.name} {p.state}" for p in host.down)
                health += f" [red]processes down: {escape(down)}[/]"
            hosts.add_row(
                host.host,
                host.role,
                host.release or "none",
                host.slot or "-",
                f"{health} ({escape(host.health)})",
            )
    console.print(hosts)
    for host in report.hosts:
        if host.scale:
            counts = " ".join(f"{k}={v}" for k, v in sorted(host.scale.items()))
            console.print(f"{escape(host.host)}: scale {escape(counts)} (shipyard scale)")
    processes = Table("host", "process", "state", "pid", "description")
    for host in report.hosts:
        for proc in host.processes:
            state = f"[red]{proc.state}[/]" if proc in host.down else proc.state
            processes.add_row(host.host, proc.name, state, str(proc.pid), proc.description)
    if processes.row_count:
        console.print(processes)
    for host in report.hosts:
        for problem in host.runtime:
            console.print(f"[red]{escape(host.host)}: {escape(problem)}[/]")
    if any(host.runtime for host in report.hosts):
        console.print("'shipyard start' takes the runtime back without a failed request.")


def config_changed(verb: str, result: ConfigChanged) -> None:
    restarted = f"; release {result.restarted} restarted" if result.restarted else ""
    click.echo(f"{verb} {', '.join(result.keys)} on {', '.join(result.hosts)}{restarted}")


def config_list(
    spec_env: dict[str, str], config: dict[str, str], reveal: bool, as_json: bool
) -> None:
    items = {
        **{k: (v, "spec") for k, v in spec_env.items()},
        **{k: (v, "config") for k, v in config.items()},
    }
    from shipyard.plan import MASK

    shown = {k: (v if reveal else MASK, src) for k, (v, src) in sorted(items.items())}
    if as_json:
        click.echo(
            json.dumps({k: {"value": v, "source": s} for k, (v, s) in shown.items()}, indent=2)
        )
        return
    for key, (value, source) in shown.items():
        click.echo(f"{key}={value}  # {source}")


def processes(verb: str, result: ProcessesChanged) -> None:
    if not any(result.hosts.values()):
        click.echo("nothing was running" if verb == "stopped" else f"{verb} nothing")
        return
    click.echo(f"{verb} {_per_host(result.hosts, 'nothing')}")


def tls_renewed(result: TlsRenewed) -> None:
    for host, renewed in result.renewed.items():
        served = result.fingerprints.get(host, "")[:16]
        state = "renewed, nginx reloaded" if renewed else "still valid, not renewed"
        click.echo(f"{host}: certificate {state} (sha256 {served}...)")


def destroyed(result: Destroyed) -> None:
    for stopped in result.stopped:
        click.echo(f"stopped {stopped}")
    if result.hosts:
        kept = f" (data kept in {result.data_kept_in})" if result.data_kept_in else ""
        click.echo(f"destroyed {result.app} on {', '.join(result.hosts)}{kept}")
    if result.absent:
        click.echo(f"app {result.app} is not on {', '.join(result.absent)}: nothing to destroy")


def provisioned(result: Provisioned) -> None:
    for host, actions in result.hosts.items():
        if not actions:
            click.echo(f"{host}: already provisioned, nothing to do")
        for action in actions:
            click.echo(f"{host}: {'would ' if result.dry_run else ''}{action}")


def container_exported(result: ContainerContext) -> None:
    """The context written, and how to build and run its image."""
    tag = f"{result.app}:{result.release}"
    click.echo(
        f"{result.path}: the build context of {result.app} release {result.release} "
        f"({result.wheels} wheels; FROM {result.base})"
    )
    click.echo(f"  build: podman build --format docker -t {tag} {result.path}")
    env_file = " --env-file FILE" if result.secrets else ""
    volume = f" -v {result.app}-data:/data"
    if result.release_command:
        click.echo(
            f"  release command, first, as a one-off container: podman run --rm{env_file}"
            f"{volume} {tag} {result.release_command}"
        )
    click.echo(
        f"  run:   podman run{env_file}{volume} -p {result.port}:{result.port} "
        f"--stop-timeout {result.graceful_timeout + 5} {tag}"
    )
    if result.secrets:
        click.echo(
            f"  secrets, given when the container starts (never in the image): "
            f"{', '.join(result.secrets)}"
        )
    if result.generated:
        click.echo(
            f"  {', '.join(result.generated)}: a random value of yours, kept the same across "
            "releases (python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    if result.static:
        click.echo(
            f"  static files ({', '.join(result.static)}): served by the app itself in the "
            "image (no nginx in it; docs/container.md)"
        )
    if result.front:
        click.echo(
            f"  {', '.join(result.front)}: Django serves none of them with DEBUG off; the image "
            "holds them (/app/static, the volume's media/) for a front such as nginx "
            "(docs/container.md)"
        )
    if result.built_here:
        click.echo(
            f"  built on this machine: {', '.join(result.built_here)}; the base image needs "
            "the shared libraries they link against (ldd shows them)"
        )


def error(message: str, hint: str | None) -> None:
    console = error_console()
    console.print(f"[red bold]error:[/] {escape(message)}")
    if hint:
        console.print(escape(hint))


def error_line(text: str) -> None:
    error_console().print(escape(text))


def internal_error(exc: BaseException | None) -> None:
    console = error_console()
    console.print(f"[red bold]internal error[/] (a bug in shipyard): {escape(str(exc))}")
    try:
        path = _crash_log()
    except OSError as err:  # a full disk, say: the report matters more than its file
        console.print(f"Its traceback could not be saved ({escape(str(err))}); please report")
        console.print("this message and the command that gave it.")
        return
    console.print(f"The traceback is in {path}; please report it with that file.")


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


def exported(result: Written) -> None:
    """What an export wrote, and what to run next; a secret's value is never shown."""
    where = result.directory
    click.echo(
        f"wrote {where}: {len(result.resources)} manifests ({', '.join(result.resources)}), "
        "kustomization.yaml"
    )
    if result.secrets == "stored":
        made = f"; generated {', '.join(result.generated)}" if result.generated else ""
        click.echo(
            f"{where / 'secret.env'}: the secrets of target {result.target} (mode 0600, "
            f"values not shown{made}); keep it out of version control"
        )
    elif result.secrets == "kept":
        click.echo(f"{where / 'secret.env'}: yours, kept as it was (mode 0600)")
    elif result.secrets == "to fill":
        click.echo(
            f"write {where / 'secret.env'} before applying: secret.env.example lists the "
            "names (or export with --target NAME to take the values a target stores)"
        )
    click.echo(f"apply with: kubectl apply -k {where}")
