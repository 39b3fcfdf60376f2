"""Finishing or undoing a switch whose process died: look at what nginx serves, let
journal.decide choose, make nginx, the slots, `current` and state.json agree.

Every command on an app runs `recover` first, holding the app's lock (so the journal's
writer is gone); `put_back_dead_sites` is what every shipyard reload of a shared nginx does
first (journal.put_back_dead_sites), so that no other app's reload makes nginx serve a site
file a dead switch left.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Protocol

from shipyard.host import health, journal, programs, tls
from shipyard.host.journal import Entry, Recovery, Seen, Side
from shipyard.host.layout import SLOTS, AppLayout, HostLayout
from shipyard.host.procman import ProcessManager, slot_names
from shipyard.host.release import is_installed, release_spec
from shipyard.host.scale import load_scale, scaled
from shipyard.host.servers import Servers
from shipyard.host.state import AppState, holder, load_state, now, save_state
from shipyard.host.steps import Connection, Symlink, Upload
from shipyard.host.supervisor import SupervisorClient
from shipyard.host.switch import host_header, retire_procs, site_content

# The first line of every site file shipyard writes (site.conf.j2).
_SITE_HEADER = re.compile(r"^# Managed by shipyard: app \S+, release (\S+), slot (\w+)\.")


class Host(Protocol):
    """What recovery works with: lifecycle.Machine's parts."""

    @property
    def conn(self) -> Connection: ...

    @property
    def host(self) -> HostLayout: ...

    @property
    def listen(self) -> str: ...

    @property
    def servers(self) -> Servers: ...

    def procs(self, supervisor: SupervisorClient, app: AppLayout) -> ProcessManager: ...


def recover(machine: Host, app: AppLayout) -> str | None:
    """Finish or undo the app's unfinished switch, if its journal names one; the line that
    says what was done. The caller holds the app's lock."""
    entry = journal.load(app)
    if entry is None:
        journal.clear(app)  # if any: one cut short, as its writer died before the first step
        return None
    if not is_installed(app, entry.to.release) or (
        entry.origin is not None and not is_installed(app, entry.origin.release)
    ):
        journal.clear(app)  # a release it names is gone (destroyed, pruned): nothing to do
        return None
    supervisor = machine.servers.supervisor(machine.host)
    state = load_state(app)
    seen = observe(machine, app, entry, supervisor, state)
    plan = journal.decide(entry, seen)
    carry_out(machine, app, entry, plan, supervisor, state)
    journal.clear(app)
    return plan.line


def observe(
    machine: Host, app: AppLayout, entry: Entry, supervisor: SupervisorClient, state: AppState
) -> Seen:
    """What nginx serves (asked through it: its answer names the release and slot of the
    site it has loaded), which slots run, and what the site file and state.json name."""
    site = site_names(machine.conn.read(PurePosixPath(app.site_file)))
    running = supervisor.is_running()
    procs = machine.procs(supervisor, app)
    web = programs.Instance("web", "web")
    slots = frozenset(
        slot
        for slot in SLOTS
        if (running or procs.kind == "systemd")
        and (info := procs.process(procs.name(web, slot))) is not None
        and info.state == "RUNNING"
    )
    serving = site
    if running:
        spec = release_spec(app, entry.to.release)
        url = tls.check_url(app, machine.listen, spec.healthcheck.request_path)
        probe = machine.servers.probe_url(url, host_header(spec), health.Healthy())
        if probe.status is not None:  # nginx answered: its headers say what it has loaded
            serving = Side(probe.release, probe.slot) if probe.release and probe.slot else None
    live = Side(state.live, state.slot) if state.live and state.slot else None
    return Seen(serving=serving, site=site, running=slots, live=live)


def site_names(content: bytes | None) -> Side | None:
    """The release and slot a site file points nginx at."""
    if content is None:
        return None
    found = _SITE_HEADER.match(content.decode(errors="replace"))
    return Side(found[1], found[2]) if found else None


def carry_out(
    machine: Host,
    app: AppLayout,
    entry: Entry,
    plan: Recovery,
    supervisor: SupervisorClient,
    state: AppState,
) -> None:
    conn, keep = machine.conn, plan.keep
    site = PurePosixPath(app.site_file)
    if plan.write_site:
        if keep is None:
            conn.remove(site)
        else:
            nginx = machine.servers.find_nginx(conn.host)
            content = site_content(app, keep.release, keep.slot, machine.listen, nginx)
            conn.put(Upload(content.encode(), site))
    running = supervisor.is_running()
    if plan.reload and running:
        machine.servers.reload_nginx(conn, machine.host, supervisor, drain=True)
    if plan.stop is not None:
        side = entry.to if plan.stop == entry.to.slot else entry.origin
        assert side is not None
        spec = scaled(release_spec(app, side.release), load_scale(app))
        procs = machine.procs(supervisor, app)
        names = slot_names(procs, spec, side.slot)
        if running or procs.kind == "systemd":
            retire_procs(conn, procs, app, side.slot, names)
        else:
            conn.remove(PurePosixPath(app.program_file(side.slot)))
            conn.remove(PurePosixPath(app.env_file(side.slot)))
        if state.warm is not None and state.warm.slot == side.slot:
            state.warm = None
    if plan.record:
        _record(app, state, entry, keep)
    if keep is not None:
        conn.link(Symlink(f"releases/{keep.release}", PurePosixPath(app.current)))
    state.log("recover", entry.to.release, plan.line)
    save_state(app, state)


def _record(app: AppLayout, state: AppState, entry: Entry, keep: Side | None) -> None:
    """state.json names what serves now, as a commit would have recorded it."""
    if keep is None:
        state.live, state.slot = None, None
        return
    if keep.release != state.live:
        if state.live:
            state.set_status(state.live, "previous")
        record = state.record(keep.release)
        changes: dict[str, str | int] = {}
        if record is None or not record.deployed_at or keep == entry.to:
            changes = {"deployed_at": now(), "deployed_by": holder()}
            changes["deployed_seq"] = state.next_seq()
        state.set_status(keep.release, "live", **changes)
    state.live, state.slot = keep.release, keep.slot
