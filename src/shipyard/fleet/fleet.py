"""Deploying to SSH hosts: one release artifact, staged on every web host, then switched.

all-at-once (the default) is two-phase: every host uploads, installs and starts the new
release beside the serving one and health-checks it; only when every host passed does any
host switch. rolling takes batches out of the load balancer, switches them, and puts them
back. Hosts run the same host-side code as the local target, through their agent.
"""

from __future__ import annotations

import contextlib
import secrets as random_secrets
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shipyard.build import artifact as artifacts
from shipyard.build.artifact import BuildInputs
from shipyard.build.bytecode_bundle import ensure_bundle, tag_for
from shipyard.build.platforms import Platform, local_platform
from shipyard.build.testgate import run_tests
from shipyard.errors import DeployError, HostError, ShipyardError, UsageError
from shipyard.events import Progress
from shipyard.fleet import provision
from shipyard.fleet.remote import (
    Agent,
    AgentSession,
    ProtocolMismatch,
    RemoteHost,
    lib_id,
    require_runtime,
    runtime_current,
    target_hosts,
)
from shipyard.fleet.ssh import SSH_FAILED, ControlDir
from shipyard.fleet.tls import check_fleet_tls, send_tls
from shipyard.host import protocol as p
from shipyard.host import wire
from shipyard.host.artifact import MANIFEST, Artifact, wheel_store
from shipyard.host.layout import HostLayout
from shipyard.host.local import LocalConnection
from shipyard.host.steps import Command, Connection, as_user
from shipyard.plan import Plan
from shipyard.spec.model import Spec, TargetSpec

T = TypeVar("T")
R = TypeVar("R", bound=p.Reply)


@dataclass
class Failure:
    host: str
    stage: str
    error: ShipyardError


class FleetError(ShipyardError):
    """One or more hosts failed: which, at which stage, what they said, and where things stand."""

    def __init__(self, failures: list[Failure], where: str, hint: str) -> None:
        lines = [f"{len(failures)} host(s) failed {where}:"]
        for failure in failures:
            text = failure.error.message
            if not text.startswith(failure.host):
                text = f"{failure.host}: {text}"
            lines.append(f"- [{failure.stage}] {text}")
            if failure.error.hint:
                lines.append(f"  {failure.error.hint}")
        super().__init__("\n".join(lines), hint=hint)
        self.failures = failures


@dataclass
class Fleet:
    """An ssh target's hosts with their connections (closed with the fleet)."""

    name: str
    target: TargetSpec
    hosts: list[RemoteHost]
    cache: Path
    control: ControlDir
    reach: Reach = field(default_factory=lambda: SSHReach())

    @property
    def web(self) -> list[RemoteHost]:
        return [h for h in self.hosts if h.role == "web"]

    @property
    def lb(self) -> RemoteHost | None:
        return next((h for h in self.hosts if h.role == "lb"), None)

    def close(self) -> None:
        """Masters stay up for ControlPersist (the next command reuses them), except in a
        private control directory, which goes away now."""
        if self.control.private:
            for host in self.hosts:
                host.conn.close()
        self.control.cleanup()

    def url(self) -> str:
        from shipyard.fleet.remote import ssh_hostname

        front = self.lb or self.web[0]
        _, _, port = front.listen.rpartition(":")
        return f"http://{ssh_hostname(front.conn)}:{port}/"


class Reach(Protocol):
    """How the fleet gets to hosts' agents: over ssh (SSHReach), or to fakes in tests."""

    def ready(self, fleet: Fleet, host: RemoteHost) -> None:
        """The host can run this machine's agent: facts read, runtime there, agent synced."""

    def open(
        self, fleet: Fleet, host: RemoteHost, hello: p.Hello
    ) -> tuple[AgentSession, p.HelloReply]:
        """A session with the host's agent, and its answer to `hello`."""


class SSHReach:
    def ready(self, fleet: Fleet, host: RemoteHost) -> None:
        facts = host.read_facts(fleet.target.run_user())
        require_runtime(host)
        if facts.lib != lib_id():
            provision.execute(host, [provision.lib_action(host, fleet.cache)])

    def open(
        self, fleet: Fleet, host: RemoteHost, hello: p.Hello
    ) -> tuple[AgentSession, p.HelloReply]:
        return open_current(fleet, host, hello)


@contextmanager
def open_fleet(project: Path, spec: Spec, name: str, cache: Path) -> Iterator[Fleet]:
    target = spec.target(name)
    if target.type != "ssh":
        raise UsageError(f"target {name!r} is not an ssh target.")
    control = ControlDir()
    fleet = Fleet(name, target, target_hosts(target, control.path, project), cache, control)
    try:
        yield fleet
    finally:
        fleet.close()


def each(
    hosts: Sequence[RemoteHost], work: Callable[[RemoteHost], T], limit: int, stage: str
) -> tuple[dict[str, T], list[Failure]]:
    """Run `work` on every host, at most `limit` at once; collect results and failures."""
    results: dict[str, T] = {}
    failures: list[Failure] = []
    if not hosts:
        return results, failures
    with ThreadPoolExecutor(max_workers=min(limit, len(hosts))) as pool:
        futures = {host.name: pool.submit(work, host) for host in hosts}
        for host in hosts:
            try:
                results[host.name] = futures[host.name].result()
            except ShipyardError as err:
                failures.append(Failure(host.name, stage, err))
    return results, failures


def connect(fleet: Fleet, reporter: Progress, hosts: Sequence[RemoteHost] | None = None) -> None:
    """Facts from every host in parallel; the agent synced where shipyard changed."""

    def ready(host: RemoteHost) -> None:
        fleet.reach.ready(fleet, host)

    _, failures = each(hosts or fleet.hosts, ready, fleet.target.parallel, "connect")
    if failures:
        raise FleetError(failures, "before anything was changed", "Nothing was deployed.")


def check_hosts(fleet: Fleet) -> dict[str, str]:
    """Host -> what keeps it from a deploy ("" when ready), from its facts."""

    def one(host: RemoteHost) -> str:
        try:
            host.read_facts(fleet.target.run_user())
            require_runtime(host)
        except ShipyardError as err:
            return err.message.removeprefix(f"{host.name}: ")
        facts = host.facts
        assert facts is not None
        if facts.disk_free_kb and facts.disk_free_kb < 512 * 1024:
            return f"only {facts.disk_free_kb // 1024} MiB free under {host.base}"
        return ""

    found, _ = each(fleet.hosts, one, fleet.target.parallel, "check")
    return {host.name: found[host.name] for host in fleet.hosts}


# --- provision ----------------------------------------------------------------------------------


def provision_fleet(
    fleet: Fleet, reporter: Progress, dry_run: bool, acme: bool = False
) -> dict[str, list[str]]:
    """`acme`: the target's certificate comes from ACME: its lb gets certbot."""

    def one(host: RemoteHost) -> list[str]:
        facts = host.read_facts(fleet.target.run_user())
        certbot = acme and host.role == "lb"
        actions = provision.plan(host, facts, fleet.target.run_user(), fleet.cache, certbot)
        if dry_run:
            return [action.what for action in actions]
        return provision.execute(host, actions)

    done, failures = each(fleet.hosts, one, fleet.target.parallel, "provision")
    if failures:
        raise FleetError(
            failures,
            "to provision",
            "Hosts not listed are provisioned. Fix the failures and run provision again.",
        )
    return done


# --- deploy -------------------------------------------------------------------------------------


@dataclass
class Sessions:
    """Open agent sessions, one per host, closed together."""

    agents: dict[str, AgentSession] = field(default_factory=dict)

    def __getitem__(self, host: str) -> AgentSession:
        return self.agents[host]

    def close(self) -> None:
        for agent in self.agents.values():
            agent.close()


@contextmanager
def sessions(fleet: Fleet, hosts: Sequence[RemoteHost]) -> Iterator[Sessions]:
    opened = Sessions()
    try:

        def start(host: RemoteHost) -> AgentSession:
            return fleet.reach.open(fleet, host, p.Hello())[0]

        started, failures = each(hosts, start, fleet.target.parallel, "connect")
        opened.agents.update(started)
        if failures:
            raise FleetError(failures, "to start shipyard's agent", "Nothing was deployed.")
        yield opened
    finally:
        opened.close()


@dataclass(frozen=True)
class Builder:
    """How a deploy makes its artifact on this machine: the real build by default; unit tests
    pass fakes, to run the deploy around it without resolving, fetching or compiling."""

    gather_inputs: Callable[[Connection, Path, Spec, Path, Platform | None], BuildInputs] = (
        artifacts.gather_inputs
    )
    fill_wheels: Callable[[Connection, Path, BuildInputs], object] = artifacts.fill_wheels
    build: Callable[[Connection, Path, Spec, Path, BuildInputs], Artifact] = artifacts.build
    run_tests: Callable[[Connection, Path, Spec, Path, BuildInputs], str] = run_tests


BUILDER = Builder()


@dataclass(frozen=True)
class FleetOutcome:
    release: str
    switched: list[str]
    unchanged: list[str]
    url: str
    sent_bytes: int


def deploy(
    project: Path,
    spec: Spec,
    fleet: Fleet,
    reporter: Progress,
    *,
    skip_tests: bool = False,
    lock_wait: float = 120.0,
    builder: Builder = BUILDER,
) -> FleetOutcome:
    conn = LocalConnection()
    check_fleet_tls(spec, fleet.name, fleet.lb)
    with reporter.stage("resolve dependencies"):
        inputs = builder.gather_inputs(conn, project, spec, fleet.cache, None)
        builder.fill_wheels(conn, fleet.cache, inputs)
    run_gate = not skip_tests and spec.tests.enabled
    if not run_gate:
        reporter.warn(
            "tests skipped" + (" (--skip-tests)" if skip_tests else " (tests.enabled = false)")
        )
    agents = Sessions()
    try:
        # The tests, and reaching every host (facts, agent, lock), overlap the build.
        with ThreadPoolExecutor(max_workers=2) as pool:
            tests = (
                pool.submit(builder.run_tests, conn, project, spec, fleet.cache, inputs)
                if run_gate
                else None
            )
            started = time.monotonic()
            ready = pool.submit(_prepare, fleet, agents, spec, lock_wait)
            with reporter.stage("build"):
                artifact = builder.build(conn, project, spec, fleet.cache, inputs)
                reporter.note(
                    f"artifact {artifact.id}: {artifact.manifest.holds}"
                    + (" (reused)" if artifact.reused else "")
                )
            hellos = ready.result()
            reporter.done(f"connect + lock {len(fleet.hosts)} host(s)", time.monotonic() - started)
            web = fleet.web
            platform = hosts_platform(web, hellos)
            if not platform.is_local:  # built for this machine while connecting: again for them
                with reporter.stage(f"build for {platform.describe()}"):
                    inputs = builder.gather_inputs(conn, project, spec, fleet.cache, platform)
                    artifact = builder.build(conn, project, spec, fleet.cache, inputs)
                    reporter.note(f"artifact {artifact.id}")
            with reporter.stage("upload + install"):
                sent = _distribute(fleet, web, agents, artifact, spec, hellos)
                reporter.note(f"sent {sent} bytes in all")
            if tests is not None:
                with reporter.stage("test"):
                    reporter.note(tests.result())
        switched, unchanged = roll_out(
            fleet, agents, spec, artifact, hellos, reporter, project=project
        )
    finally:
        agents.close()
    return FleetOutcome(artifact.id, switched, unchanged, fleet.url(), sent)


def roll_out(
    fleet: Fleet,
    agents: Sessions,
    spec: Spec,
    artifact: Artifact,
    hellos: dict[str, p.HelloReply],
    reporter: Progress,
    project: Path | None = None,
) -> tuple[list[str], list[str]]:
    """With the release installed on every web host: secrets, HTTPS (`project`: where the
    spec's TLS files are), the switch by the target's strategy, then the lb. The hosts
    switched, and those that already served the release."""
    web = fleet.web
    states = {h.name: app_state(hellos[h.name]) for h in web}
    _sync_secrets(fleet, web, agents, spec, reporter, states)
    if project is not None:
        send_tls(project, spec, fleet.name, web, fleet.lb, agents)
    todo = [h for h in web if states[h.name].live != artifact.id]
    unchanged = [h.name for h in web if h not in todo]
    setup_on = setup_host(fleet.target, spec, states)
    if fleet.target.strategy == "rolling":
        switched = _rolling(fleet, todo, agents, spec, artifact, reporter, setup_on)
    else:
        switched = _all_at_once(fleet, todo, agents, spec, artifact, reporter, setup_on=setup_on)
    if fleet.lb is not None:
        with reporter.stage("load balancer"):
            _lb(fleet, agents, spec, artifact, down=[], static=True)
    return switched, unchanged


def setup_host(target: TargetSpec, spec: Spec, states: dict[str, p.StateReply]) -> str | None:
    """With `release_on = "first"`, the host on which the spec's setup is done for the whole
    target (recorded there, or assumed where the app served before it had one); None when it
    is not done yet, or when each host decides for itself (`each`: data kept per host)."""
    if not spec.setup or target.release_on == "each":
        return None
    done = [name for name, state in states.items() if state.setup_done]
    live = [name for name, state in states.items() if state.live]
    return next(iter(done or live), None)


def app_state(hello: p.HelloReply) -> p.StateReply:
    """The app's state a hello brought (asked for with its `app`)."""
    assert hello.state is not None, "a hello for an app answers with its state"
    return hello.state


def hosts_platform(web: list[RemoteHost], hellos: dict[str, p.HelloReply]) -> Platform:
    """The one platform the web hosts share, which their wheels are fetched for."""
    found: dict[Platform, list[str]] = {}
    for host in web:
        hello = hellos[host.name]
        found.setdefault(Platform.parse(hello.platform, hello.libc), []).append(host.name)
    if len(found) > 1:
        kinds = "; ".join(f"{p.describe()}: {', '.join(names)}" for p, names in found.items())
        raise DeployError(
            f"the target's web hosts run on different platforms ({kinds}).",
            hint="Put hosts of one platform per target. Nothing was uploaded.",
        )
    return next(iter(found)) if found else local_platform()


def open_current(
    fleet: Fleet, host: RemoteHost, hello: p.Hello | None = None
) -> tuple[Agent, p.HelloReply]:
    """A session with an agent that runs this machine's code, and its hello.

    Fast path: the agent starts at once when its code and runtime are current; else (an agent
    of other code, or of another protocol) the host's facts say what is missing, and the agent
    is synced and started again.
    """
    hello = hello or p.Hello()
    agent = Agent.open(host)
    mismatch = False
    try:
        said: p.HelloReply | None = agent.call(hello)
    except ProtocolMismatch:  # another shipyard's agent: synced below whatever its mark says
        said, mismatch = None, True
    except HostError:  # the agent did not start (an old one, say), or ssh did not connect
        said = None
        if agent.proc.returncode == SSH_FAILED:
            agent.close()
            raise
    except BaseException:  # it answered no (the app's lock is held, say): nothing left open
        agent.close()
        raise
    if said is not None and runtime_current(said):
        return agent, said
    agent.close()
    facts = host.read_facts(fleet.target.run_user())
    require_runtime(host)
    if mismatch or facts.lib != lib_id():
        provision.execute(host, [provision.lib_action(host, fleet.cache)])
    agent = Agent.open(host)
    try:
        return agent, agent.call(hello)
    except BaseException:
        agent.close()
        raise


def _prepare(
    fleet: Fleet, agents: Sessions, spec: Spec, lock_wait: float
) -> dict[str, p.HelloReply]:
    """Each host on its own: facts, the agent synced and started, the app's lock, its hello."""

    def one(host: RemoteHost) -> p.HelloReply:
        web = host.role == "web"
        lock = p.LockParams(action="deploy", wait=lock_wait) if web else None
        agent, hello = fleet.reach.open(fleet, host, p.Hello(app=spec.name, lock=lock))
        agents.agents[host.name] = agent
        if not web:  # the lb: its own lock for this app's site
            agent.call(p.Lock(app=spec.name, action="deploy", wait=lock_wait))
        return hello

    hellos, failures = each(fleet.hosts, one, fleet.target.parallel, "connect")
    if failures:
        raise FleetError(failures, "before anything was changed", "Nothing was deployed.")
    return hellos


def _distribute(
    fleet: Fleet,
    web: list[RemoteHost],
    agents: Sessions,
    artifact: Artifact,
    spec: Spec,
    hellos: dict[str, p.HelloReply],
) -> int:
    """Send each host only the wheels it lacks and the artifact; install the release."""
    store = wheel_store(fleet.cache)
    artifact_files = {
        path.relative_to(artifact.path).as_posix(): wire.file_entry(
            f"artifact/{path.relative_to(artifact.path).as_posix()}", path
        )
        for path in sorted(artifact.path.rglob("*"))
        if path.is_file()
    }
    python = artifact.manifest.python.rsplit(".", 1)[0]
    sent: dict[str, int] = {}
    bundles = _bytecode_bundles(store, artifact)
    same_in: dict[Path, dict[str, str]] = {}  # per older artifact: files the new one shares

    def one(host: RemoteHost) -> None:
        agent = agents[host.name]
        hello = hellos[host.name]
        host_python = hello.python.rsplit(".", 1)[0]
        if host_python != python:
            raise HostError(
                host.name,
                f"runs Python {host_python}; release {artifact.id} is built for Python {python}.",
                hint=f'Set python = "{host_python}" in the spec (with python{host_python} '
                "installed on this machine to build for it). Nothing was uploaded.",
            )
        if artifact.id in app_state(hello).installed:
            sent[host.name] = 0
            return
        have = hello.wheels
        files = [
            wire.FileEntry(
                f"wheels/{w.file}", (store / w.file).stat().st_size, w.sha256, store / w.file
            )
            for w in artifact.manifest.wheels
            if have.get(w.file) != w.sha256
        ]
        files += [bundle for bundle in bundles if have.get(bundle.source.name) != bundle.sha256]
        reuse: p.Reuse | None = None
        if artifact.id not in hello.artifacts:
            base = _reusable_artifact(artifact, hello)
            if base is not None and base not in same_in:
                same_in[base] = unchanged_files(artifact_files, base)
            unchanged = same_in[base] if base is not None else {}
            files += [entry for rel, entry in artifact_files.items() if rel not in unchanged]
            reuse = p.Reuse(base=base.name, files=unchanged) if base and unchanged else None
        receive = p.Receive(release=artifact.id, install=spec.name, reuse=reuse)
        said = agent.call(receive, files)
        sent[host.name] = sum(entry.size for entry in files)
        if said.reuse_failed:  # that artifact changed on the host: send all of it
            files = list(artifact_files.values())
            agent.call(receive.model_copy(update={"reuse": None}), files)
            sent[host.name] += sum(entry.size for entry in files)

    _, failures = each(web, one, fleet.target.parallel, "upload + install")
    if failures:
        raise FleetError(
            failures,
            "to receive or install the release",
            "Nothing was switched anywhere: every host keeps serving its release.",
        )
    return sum(sent.values())


def _bytecode_bundles(store: Path, artifact: Artifact) -> list[wire.FileEntry]:
    """The dependencies' bytecode, compiled here once (bytecode_bundle.py): hosts installing
    them for the first time unpack it instead of compiling. None for another Python."""
    tag = tag_for(artifact.manifest.python)
    entries = []
    for wheel in artifact.manifest.wheels:
        bundle = ensure_bundle(store / wheel.file, tag)
        if bundle is not None:
            entries.append(wire.file_entry(f"wheels/{bundle.name}", bundle))
    return entries


def _reusable_artifact(artifact: Artifact, hello: p.HelloReply) -> Path | None:
    """An artifact both this machine and the host have, the host's live one first: the new
    artifact's files that are the same in it need not be sent."""
    live = hello.state.live if hello.state else None
    on_host = [live or "", *reversed(hello.artifacts)]
    for release in on_host:
        local: Path = artifact.path.parent / release
        if release and release != artifact.id and release in hello.artifacts and local.is_dir():
            return local
    return None


def unchanged_files(files: dict[str, wire.FileEntry], base: Path) -> dict[str, str]:
    """{relative path: sha256} of the files that `base` has with the same content."""
    unchanged = {}
    for rel, entry in files.items():
        if rel == MANIFEST:  # always sent: it is what names the release
            continue
        old = base / rel
        if (
            old.is_file()
            and old.stat().st_size == entry.size
            and wire.sha256_of(old) == entry.sha256
        ):
            unchanged[rel] = entry.sha256
    return unchanged


def _sync_secrets(
    fleet: Fleet,
    web: list[RemoteHost],
    agents: Sessions,
    spec: Spec,
    reporter: Progress,
    states: dict[str, p.StateReply],
) -> None:
    """Generated secrets are the same on every host (sessions, signed cookies behind an lb)."""
    keys = {name: set(state.config_keys) for name, state in states.items()}
    required = [k for k, how in spec.secrets.items() if how == "required"]
    lacking = {name: [k for k in required if k not in have] for name, have in keys.items()}
    if any(lacking.values()):
        where = "; ".join(f"{name}: {', '.join(ks)}" for name, ks in lacking.items() if ks)
        raise DeployError(
            f"app {spec.name} needs secrets that are not set ({where}).",
            hint=f"Set them first: shipyard config set --target {fleet.name} KEY=... "
            "(nothing was switched).",
        )
    generate = [k for k, how in spec.secrets.items() if how == "generate"]
    missing = {k for k in generate for have in keys.values() if k not in have}
    if not missing:
        return
    values: dict[str, str] = {}
    for key in sorted(missing):
        holder = next((name for name, have in keys.items() if key in have), None)
        if holder is not None:
            values[key] = agents[holder].call(p.ConfigGet(app=spec.name)).config[key]
        else:
            values[key] = random_secrets.token_urlsafe(32)
    for host in web:
        if missing - keys[host.name]:
            config = agents[host.name].call(p.ConfigGet(app=spec.name)).config
            config.update({k: values[k] for k in missing - keys[host.name]})
            agents[host.name].call(p.ConfigPut(app=spec.name, config=config))
    reporter.note(f"secret(s) {', '.join(sorted(missing))} set on every host")


def _stage_all(
    fleet: Fleet,
    hosts: list[RemoteHost],
    agents: Sessions,
    spec: Spec,
    release: str,
    action: str,
    *,
    release_cmd: bool,
    reporter: Progress,
    first_batch: bool = True,
    setup_on: str | None = None,
) -> list[Failure]:
    """Stage on every host. The release command runs once, on the first host of the first
    batch before any other host stages, or on every host when the target says `each`; so
    does the setup command on the app's first deploy to the target (`setup_on`: the host it
    is done on already, if any)."""
    failures: list[Failure] = []
    rest = hosts
    each_host = fleet.target.release_on == "each"
    first_runs = spec.release or (spec.setup and setup_on is None)
    if release_cmd and first_runs and hosts and first_batch and not each_host:
        first, rest = hosts[0], hosts[1:]
        try:
            said = agents[first.name].call(
                p.Stage(
                    app=spec.name,
                    release=release,
                    action=action,
                    release_cmd=True,
                    setup_done_on=setup_on,
                )
            )
        except ShipyardError as err:
            return [Failure(first.name, "release command + stage", err)]
        _tell(reporter, first.name, said)
        setup_on = setup_on or first.name
    staged, failures = each(
        rest,
        lambda h: agents[h.name].call(
            p.Stage(
                app=spec.name,
                release=release,
                action=action,
                release_cmd=release_cmd and each_host,
                setup_done_on=setup_on if release_cmd and spec.setup and not each_host else None,
            )
        ),
        fleet.target.parallel,
        "stage",
    )
    for name, said in staged.items():
        _tell(reporter, name, said)
    return failures


def _tell(reporter: Progress, host: str, said: p.StageReply) -> None:
    for note in said.notes:
        reporter.note(f"{host}: {note}")


def _abort(fleet: Fleet, hosts: list[RemoteHost], agents: Sessions, spec: Spec) -> None:
    each(
        hosts, lambda h: agents[h.name].call(p.Abort(app=spec.name)), fleet.target.parallel, "abort"
    )


def _all_at_once(
    fleet: Fleet,
    hosts: list[RemoteHost],
    agents: Sessions,
    spec: Spec,
    artifact: Artifact,
    reporter: Progress,
    action: str = "deploy",
    setup_on: str | None = None,
) -> list[str]:
    if not hosts:
        return []
    with reporter.stage(f"stage on {len(hosts)} host(s)"):
        failures = _stage_all(
            fleet,
            hosts,
            agents,
            spec,
            artifact.id,
            action,
            release_cmd=action == "deploy",
            reporter=reporter,
            setup_on=setup_on,
        )
        if failures:
            _abort(fleet, hosts, agents, spec)
            raise FleetError(
                failures,
                "while staging",
                "Nothing was switched anywhere: every host keeps serving its release. Fix it "
                "and deploy again.",
            )
    with reporter.stage(f"switch {len(hosts)} host(s)"):
        done, failures = each(
            hosts,
            lambda h: agents[h.name].call(p.Commit(app=spec.name)),
            fleet.target.parallel,
            "switch",
        )
        if failures:
            _after_partial_failure(fleet, hosts, agents, spec, list(done), failures, reporter)
    return [h.name for h in hosts]


def _rolling(
    fleet: Fleet,
    hosts: list[RemoteHost],
    agents: Sessions,
    spec: Spec,
    artifact: Artifact,
    reporter: Progress,
    setup_on: str | None = None,
) -> list[str]:
    switched: list[str] = []
    size = fleet.target.batch
    batches = [hosts[i : i + size] for i in range(0, len(hosts), size)]
    # for the batches after the first (release_on = "first"): the setup is done by then
    later_setup_on = setup_on or (batches[0][0].name if batches else None)
    for number, batch in enumerate(batches, 1):
        names = [h.name for h in batch]
        with reporter.stage(f"batch {number}/{len(batches)}: {', '.join(names)}"):
            if fleet.lb is not None:
                _lb(fleet, agents, spec, artifact, down=batch, static=False)
            failures = _stage_all(
                fleet,
                batch,
                agents,
                spec,
                artifact.id,
                "deploy",
                release_cmd=True,
                reporter=reporter,
                first_batch=number == 1,
                setup_on=setup_on if number == 1 else later_setup_on,
            )
            if not failures:
                done, failures = each(
                    batch,
                    lambda h: agents[h.name].call(p.Commit(app=spec.name)),
                    fleet.target.parallel,
                    "switch",
                )
                switched += list(done)
            else:
                _abort(fleet, batch, agents, spec)
            if fleet.lb is not None:
                _lb(fleet, agents, spec, artifact, down=[], static=False)
            if failures:
                _after_partial_failure(fleet, hosts, agents, spec, switched, failures, reporter)
    return switched


def _after_partial_failure(
    fleet: Fleet,
    hosts: list[RemoteHost],
    agents: Sessions,
    spec: Spec,
    switched: list[str],
    failures: list[Failure],
    reporter: Progress,
) -> None:
    """Apply the target's on_failure policy to the hosts that did switch, then report."""
    if fleet.target.on_failure == "rollback" and switched:
        rolled = [h for h in hosts if h.name in switched]

        def back(host: RemoteHost) -> None:
            agent = agents[host.name]
            previous = agent.call(p.RollbackTarget(app=spec.name)).release
            agent.call(p.Stage(app=spec.name, release=previous, action="rollback"))
            agent.call(p.Commit(app=spec.name))

        _, more = each(rolled, back, fleet.target.parallel, "roll back")
        where = f"({', '.join(switched)} rolled back to their previous release)"
        raise FleetError(
            failures + more,
            f"while switching {where}",
            "Every other host serves its previous release. Fix the failure and deploy again.",
        )
    kept = ", ".join(switched) or "none"
    raise FleetError(
        failures,
        f"while switching (already switched and kept: {kept})",
        "Hosts that failed keep serving their previous release. Fix the failure and run the "
        "same deploy again: hosts already on the new release are skipped.",
    )


def _lb(
    fleet: Fleet,
    agents: Sessions,
    spec: Spec,
    artifact: Artifact,
    *,
    down: list[RemoteHost],
    static: bool,
    static_release: str | None = None,
) -> None:
    lb = fleet.lb
    assert lb is not None
    drained = {h.name for h in down}
    backends = [(h.backend_address(), h.name in drained) for h in fleet.web]
    files: list[wire.FileEntry] = []
    release = static_release or artifact.id
    if static:
        root = artifact.path / "static"
        files = (
            [
                wire.file_entry(path.relative_to(root).as_posix(), path)
                for path in sorted(root.rglob("*"))
                if path.is_file()
            ]
            if root.is_dir()
            else []
        )
    request = p.Lb(
        app=spec.name,
        release=release,
        spec=spec,
        backends=backends,
        static=artifact.manifest.static,
        update_static=static,
    )
    agents[lb.name].call(request, files)


# --- the other fleet-wide commands --------------------------------------------------------------


def rollback(
    spec: Spec, fleet: Fleet, reporter: Progress, to: str | None, lock_wait: float
) -> list[str]:
    with reporter.stage(f"connect to {len(fleet.web)} host(s)"):
        connect(fleet, reporter, fleet.web)
    with sessions(fleet, fleet.web) as agents:
        _, failures = each(
            fleet.web,
            lambda h: agents[h.name].call(p.Lock(app=spec.name, action="rollback", wait=lock_wait)),
            fleet.target.parallel,
            "lock",
        )
        if failures:
            raise FleetError(failures, "to take the app's lock", "Nothing was switched.")
        targets, failures = each(
            fleet.web,
            lambda h: agents[h.name].call(p.RollbackTarget(app=spec.name, to=to)).release,
            fleet.target.parallel,
            "find release",
        )
        if failures:
            raise FleetError(failures, "to find a release to roll back to", "Nothing was switched.")
        with reporter.stage("stage"):
            _, failures = each(
                fleet.web,
                lambda h: agents[h.name].call(
                    p.Stage(app=spec.name, release=targets[h.name], action="rollback")
                ),
                fleet.target.parallel,
                "stage",
            )
            if failures:
                _abort(fleet, fleet.web, agents, spec)
                raise FleetError(failures, "while staging the rollback", "Nothing was switched.")
        with reporter.stage("switch"):
            done, failures = each(
                fleet.web,
                lambda h: agents[h.name].call(p.Commit(app=spec.name)),
                fleet.target.parallel,
                "switch",
            )
            if failures:
                raise FleetError(
                    failures,
                    "while switching back",
                    f"Rolled back: {', '.join(done) or 'none'}. Run the rollback again.",
                )
    return sorted(set(targets.values()))


@dataclass(frozen=True)
class HostReport:
    """One host's answer to `status`: a web host's status, the lb's hello, or the error."""

    host: str
    role: str
    web: p.StatusReply | None = None
    lb: p.HelloReply | None = None
    error: str | None = None


def status(spec: Spec, fleet: Fleet) -> list[HostReport]:
    def one(host: RemoteHost) -> HostReport:
        with sessions(fleet, [host]) as agents:
            if host.role == "lb":
                return HostReport(host.name, "lb", lb=agents[host.name].call(p.Hello()))
            report = agents[host.name].call(p.Status(spec=spec))
            return HostReport(host.name, "web", web=report)

    def safe(host: RemoteHost) -> HostReport:
        try:
            return one(host)
        except ShipyardError as err:
            return HostReport(host.name, host.role, error=err.message)

    rows, _ = each(fleet.hosts, safe, fleet.target.parallel, "status")
    return [rows[h.name] for h in fleet.hosts]


def releases(spec: Spec, fleet: Fleet) -> dict[str, list[p.ReleaseInfo]]:
    def one(host: RemoteHost) -> list[p.ReleaseInfo]:
        with sessions(fleet, [host]) as agents:
            return agents[host.name].call(p.Releases(app=spec.name)).releases

    found, failures = each(fleet.web, one, fleet.target.parallel, "releases")
    if failures:
        raise FleetError(failures, "to list releases", "Other hosts answered.")
    return found


def each_web(fleet: Fleet, request: p.Request[R]) -> dict[str, R]:
    """One request on every web host (start, stop, restart, destroy), a session each."""

    def one(host: RemoteHost) -> R:
        with sessions(fleet, [host]) as agents:
            return agents[host.name].call(request)

    done, failures = each(fleet.web, one, fleet.target.parallel, request.op)
    if failures:
        raise FleetError(failures, f"to {request.op}", f"Done on: {', '.join(done) or 'none'}.")
    return done


def remove_from_lb(spec: Spec, fleet: Fleet) -> bool:
    """Take the app off the target's load balancer, if it has one."""
    lb = fleet.lb
    if lb is None:
        return False
    with sessions(fleet, [lb]) as agents:
        return agents[lb.name].call(p.LbRemove(app=spec.name)).removed


def config_update(
    spec: Spec, fleet: Fleet, change: Callable[[dict[str, str]], dict[str, str]]
) -> list[str]:
    """Change the config on every web host; each restarts with it (zero downtime)."""

    def one(host: RemoteHost) -> str:
        with sessions(fleet, [host]) as agents:
            agent = agents[host.name]
            current = agent.call(p.ConfigGet(app=spec.name)).config
            agent.call(p.Restart(spec=spec, config=change(dict(current)), action="config set"))
            return host.name

    done, failures = each(fleet.web, one, fleet.target.parallel, "config")
    if failures:
        raise FleetError(
            failures, "to change the config", f"Changed on: {', '.join(done) or 'none'}."
        )
    return sorted(done)


def config_get(spec: Spec, fleet: Fleet) -> dict[str, str]:
    host = fleet.web[0]
    with sessions(fleet, [host]) as agents:
        return agents[host.name].call(p.ConfigGet(app=spec.name)).config


def follow_logs(
    spec: Spec,
    fleet: Fleet,
    process: str | None,
    lines: int,
    follow: bool,
    emit: Callable[[str], None],
) -> None:
    """Every web host's logs, each line prefixed by its host."""
    import threading

    def command(host: RemoteHost) -> Any:
        args = ["logs", "--base", str(host.base), "--app", spec.name, "--lines", str(lines)]
        if host.process_manager != "supervisor":
            args += ["--process-manager", host.process_manager]
        if process:
            args += ["--process", process]
        if follow:
            args.append("--follow")
        return host.agent_command(*args)

    procs = [(h, h.conn.popen(command(h))) for h in fleet.web]
    lock = threading.Lock()

    def pump(host: RemoteHost, stream: Any, label: str) -> None:
        # each stream is read to its end, so that neither pipe can fill and stall the
        # host's process; the reader closes it
        with stream:
            for raw in stream:
                with lock:
                    emit(f"{host.name}{label} {raw.decode(errors='replace').rstrip()}")

    def reader(host: RemoteHost, stream: Any, label: str) -> threading.Thread:
        thread = threading.Thread(target=pump, args=(host, stream, label), daemon=True)
        thread.start()
        return thread

    outs = [reader(host, proc.stdout, "") for host, proc in procs]
    errs = [reader(host, proc.stderr, " (stderr)") for host, proc in procs if proc.stderr]
    stopped: set[str] = set()
    ended = False
    try:
        for thread in outs:  # a host's logs end with its output
            while thread.is_alive():
                thread.join(0.2)
        ended = True
    finally:
        for host, proc in procs:
            if ended:  # its output ended: it is exiting, give it a moment to say how
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
            if proc.poll() is None:
                proc.terminate()
                stopped.add(host.name)
            proc.wait()
            if proc.stdin is not None:  # never used, but open until closed
                proc.stdin.close()
        for thread in errs:  # each ends with its process
            thread.join(5)
    for host, proc in procs:
        if proc.returncode and host.name not in stopped:
            emit(f"{host.name} (logs ended with exit code {proc.returncode})")


def plans(spec: Spec, fleet: Fleet, release: str, *, tree: bool = False) -> dict[str, Plan]:
    """What a deploy of `release` would do on each web host, read there (changes nothing);
    `tree`: the release is the project's source tree.
    The hosts' states come first: which host runs the release and setup commands depends on
    all of them, as in a deploy."""
    with sessions(fleet, fleet.web) as agents:
        states, failures = each(
            fleet.web,
            lambda h: agents[h.name].call(p.State(app=spec.name)),
            fleet.target.parallel,
            "plan",
        )
        if failures:
            raise FleetError(failures, "to plan the deploy", "Nothing was changed anywhere.")
        setup_on = setup_host(fleet.target, spec, states)
        todo = [h.name for h in fleet.web if states[h.name].live != release]
        each_host = fleet.target.release_on == "each"
        first = todo[0] if todo and not each_host else None  # where the commands run once

        def one(host: RemoteHost) -> Plan:
            here = each_host or host.name == first
            said = agents[host.name].call(
                p.Plan(
                    spec=spec,
                    release=release,
                    tree=tree,
                    release_cmd=here,
                    setup_done_on=setup_on if here else setup_on or first,
                )
            )
            return said.plan.model_copy(update={"host": host.name})

        found, failures = each(fleet.web, one, fleet.target.parallel, "plan")
    if failures:
        raise FleetError(failures, "to plan the deploy", "Nothing was changed anywhere.")
    return found


def run_argv(spec: Spec, fleet: Fleet, command: list[str], host_name: str | None) -> list[str]:
    """The ssh argv that runs `command` in the live release's environment on one web host."""
    names = [h.name for h in fleet.web]
    chosen = host_name or names[0]
    if chosen not in names:
        raise UsageError(
            f"--host {chosen!r} is not a web host of target {fleet.name}; hosts: "
            f"{', '.join(names)}."
        )
    host = next(h for h in fleet.web if h.name == chosen)
    with sessions(fleet, [host]) as agents:
        state = agents[host.name].call(p.State(app=spec.name))
    if not state.live or not state.slot:
        raise UsageError(f"app {spec.name} is not deployed on {chosen}.")
    layout = HostLayout(Path(str(host.base)))
    app = layout.app(spec.name)
    return host.conn.exec_argv(
        Command(
            (
                *as_user(host.app_user),
                str(layout.launcher),
                str(app.env_file(state.slot)),
                state.workdir or str(app.release(state.live)),
                *command,
            ),
            sudo=True,
        )
    )
