"""An ssh target: a fleet of hosts reached with OpenSSH, each running shipyard's agent;
optionally a load balancer in front. The orchestration is fleet/; this is its Target face."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from shipyard.build import artifact as artifacts
from shipyard.errors import UsageError
from shipyard.events import Progress
from shipyard.fleet import fleet as fleets
from shipyard.fleet.fleet import Fleet, HostReport, open_fleet
from shipyard.host import protocol as p
from shipyard.host.artifact import MANIFEST
from shipyard.host.local import LocalConnection
from shipyard.plan import Plan, PlannedStage, build_stages
from shipyard.spec.model import Spec
from shipyard.targets.base import (
    Checked,
    ConfigChanged,
    Deployed,
    Destroyed,
    Frozen,
    FrozenPin,
    HostProblem,
    HostReleases,
    HostStatus,
    Process,
    ProcessesChanged,
    Provisioned,
    ReleaseRow,
    Restarted,
    RolledBack,
    Scaled,
    Status,
    TlsRenewed,
)


class SSHTarget:
    """Every verb acts on every web host (and the lb where it has a part)."""

    def __init__(self, project: Path, spec: Spec, name: str, cache: Path) -> None:
        self.project = project
        self.spec = spec
        self.name = name
        self.cache = cache
        self._stack = ExitStack()
        self._fleet: Fleet | None = None

    @property
    def fleet(self) -> Fleet:
        """The hosts, connected on first use (a command that fails before needs none)."""
        if self._fleet is None:
            self._fleet = self._stack.enter_context(
                open_fleet(self.project, self.spec, self.name, self.cache)
            )
        return self._fleet

    def close(self) -> None:
        self._stack.close()

    def check(self) -> Checked:
        problems = fleets.check_hosts(self.fleet)
        return Checked(
            self.spec.name,
            self.name,
            self.spec.entry,
            [HostProblem(host, problem) for host, problem in problems.items()],
        )

    def plan(self, *, skip_tests: bool = False) -> list[Plan]:
        spec = self.spec
        inputs = artifacts.gather_inputs(LocalConnection(), self.project, spec, self.cache)
        release_id = inputs.artifact_id
        built = (artifacts.artifacts_dir(self.cache) / release_id / MANIFEST).is_file()
        tests = spec.tests.command if spec.tests.enabled and not skip_tests else None
        earlier = build_stages(tests, release_id, built)
        plans = fleets.plans(spec, self.fleet, release_id, tree=inputs.choice.is_tree)
        ordered = [plans[host.name] for host in self.fleet.web]
        for plan in ordered:
            plan.stages[:0] = [stage.model_copy(deep=True) for stage in earlier]
        if self.fleet.lb is not None:
            lb = self.fleet.lb.name
            ordered.append(
                Plan(
                    app=spec.name,
                    host=lb,
                    release=release_id,
                    stages=[
                        PlannedStage(
                            name="load balancer",
                            notes=[
                                "serve the release's static files at the edge",
                                "proxy to "
                                + ", ".join(h.backend_address() for h in self.fleet.web),
                            ],
                        )
                    ],
                )
            )
        return ordered

    def deploy(self, progress: Progress, *, skip_tests: bool, lock_wait: float) -> Deployed:
        done = fleets.deploy(
            self.project,
            self.spec,
            self.fleet,
            progress,
            skip_tests=skip_tests,
            lock_wait=lock_wait,
        )
        return Deployed(done.release, done.url, done.switched, done.unchanged, done.sent_bytes)

    def rollback(self, progress: Progress, *, to: str | None, lock_wait: float) -> RolledBack:
        back = fleets.rollback(self.spec, self.fleet, progress, to, lock_wait)
        return RolledBack(back, [h.name for h in self.fleet.web])

    def restart(self, progress: Progress, *, lock_wait: float) -> Restarted:
        done = fleets.each_web(self.fleet, p.Restart(spec=self.spec, wait=lock_wait))
        releases = {reply.outcome.release for reply in done.values() if reply.outcome}
        return Restarted(", ".join(sorted(releases)), list(done))

    def scale(self, progress: Progress, changes: dict[str, int], *, lock_wait: float) -> Scaled:
        done = fleets.each_web(self.fleet, p.Scale(spec=self.spec, changes=changes, wait=lock_wait))
        scales = [reply.scale for reply in done.values()]
        restarted = {reply.restarted for reply in done.values() if reply.restarted}
        return Scaled(scales[0] if scales else {}, list(done), ", ".join(sorted(restarted)) or None)

    def status(self) -> Status:
        hosts = []
        for row in fleets.status(self.spec, self.fleet):
            hosts.append(_host_status(row))
        return Status(self.spec.name, self.name, self.fleet.url(), hosts)

    def releases(self) -> list[HostReleases]:
        per_host = fleets.releases(self.spec, self.fleet)
        return [
            HostReleases(
                host,
                [
                    ReleaseRow(
                        r.id, r.version, r.git_sha, r.status, r.deployed_at, r.on_disk, r.live
                    )
                    for r in rows
                ],
            )
            for host, rows in per_host.items()
        ]

    def freeze(self) -> list[Frozen]:
        done = fleets.each_web(self.fleet, p.Freeze(app=self.spec.name))
        return [
            Frozen(
                host, reply.release, [FrozenPin(x.name, x.version, x.sha256) for x in reply.pins]
            )
            for host, reply in done.items()
        ]

    def logs(
        self, process: str | None, lines: int, follow: bool, emit: Callable[[str], None]
    ) -> None:
        fleets.follow_logs(self.spec, self.fleet, process, lines, follow, emit)

    def run_argv(self, command: list[str], host: str | None) -> list[str]:
        return fleets.run_argv(self.spec, self.fleet, command, host)

    def config_get(self) -> dict[str, str]:
        return fleets.config_get(self.spec, self.fleet)

    def config_set(self, progress: Progress, updates: dict[str, str]) -> ConfigChanged:
        hosts = fleets.config_update(self.spec, self.fleet, lambda current: {**current, **updates})
        return ConfigChanged(sorted(updates), hosts)

    def config_unset(self, progress: Progress, keys: list[str]) -> ConfigChanged:
        def drop(current: dict[str, str]) -> dict[str, str]:
            return {k: v for k, v in current.items() if k not in keys}

        return ConfigChanged(list(keys), fleets.config_update(self.spec, self.fleet, drop))

    def start(self) -> ProcessesChanged:
        done = fleets.each_web(self.fleet, p.Start(spec=self.spec))
        return ProcessesChanged({h: r.processes for h, r in done.items()})

    def stop(self) -> ProcessesChanged:
        done = fleets.each_web(self.fleet, p.Stop(spec=self.spec))
        return ProcessesChanged({h: r.processes for h, r in done.items()})

    def destroy(self, *, purge: bool) -> Destroyed:
        fleets.remove_from_lb(self.spec, self.fleet)
        done = fleets.each_web(self.fleet, p.Destroy(spec=self.spec, purge=purge))
        removed = [host for host, reply in done.items() if reply.found]
        absent = [host for host, reply in done.items() if not reply.found]
        kept = None if purge or not removed else "each host's shared/"
        return Destroyed(self.spec.name, removed, kept, absent=absent)

    def tls_renew(self, *, force: bool, lock_wait: float) -> TlsRenewed:
        raise UsageError(
            f"target {self.name!r} is an ssh target: its hosts renew their certificates "
            "themselves, and 'shipyard tls renew' acts on the local target only for now.",
            hint="Run it on the host: 'shipyard tls renew' against a local target there.",
        )

    def provision(self, progress: Progress, *, dry_run: bool) -> Provisioned:
        tls = self.spec.tls_for(self.name)
        acme = tls is not None and tls.mode == "acme"
        return Provisioned(fleets.provision_fleet(self.fleet, progress, dry_run, acme), dry_run)


def _host_status(row: HostReport) -> HostStatus:
    if row.error is not None:
        return HostStatus(row.host, row.role, error=row.error)
    if row.lb is not None:
        return HostStatus(row.host, "lb", agent_version=row.lb.version)
    web = row.web
    assert web is not None
    return HostStatus(
        row.host,
        "web",
        release=web.release,
        slot=web.slot,
        healthy=web.healthy,
        health=web.health,
        serving_release=web.serving_release,
        processes=[Process(x.name, x.state, x.pid, x.description) for x in web.processes],
        scale=web.scale,
        runtime=web.runtime,
    )
