"""shipyard's agent: the host side of a remote deploy, driven over SSH.

The deploying machine runs `python -m shipyard.host.agent session --base B --listen L` on the host
and talks to it with wire.py messages. The host side is the very code the local target runs
(install, switch, state), so a remote release behaves exactly like a local one. A session holds
the app's lock from `lock` to its end, so a two-phase fleet deploy (stage on every host, then
commit on every host) is one deploy on each host; if the connection drops, a release that was
staged and never committed is stopped again and the serving one keeps serving.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from shipyard import __version__
from shipyard.errors import DeployError, ShipyardError
from shipyard.events import Silent
from shipyard.host import lifecycle as ops
from shipyard.host import protocol as p
from shipyard.host import render, resident, tls, tlsops, wire
from shipyard.host.artifact import MANIFEST, SPEC, TREE, load_artifact
from shipyard.host.diskspace import disk_full
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.local import LocalConnection, replace_symlink, write_atomic
from shipyard.host.procman import Kind
from shipyard.host.protocol import PROTOCOL_VERSION, Reply, Request
from shipyard.host.python import local_libc
from shipyard.host.release import (
    config_upload,
    installed_releases,
    load_config,
    release_spec,
    release_workdir,
)
from shipyard.host.servers import SERVERS, Servers
from shipyard.host.setup_command import load_setup
from shipyard.host.state import app_lock, load_state, save_state
from shipyard.host.steps import Connection
from shipyard.host.supervisor import SupervisorClient
from shipyard.host.switch import Switch
from shipyard.host.systemd import check_here
from shipyard.spec.model import Spec

MANAGERS = ("supervisor", "systemd")
NOT_READY = 3  # remote.NOT_READY: the deploying machine syncs the agent and starts it again


class Session:
    """One deploying machine's conversation with this host."""

    def __init__(
        self,
        base: Path,
        listen: str,
        stream: IO[bytes],
        app_user: str = "",
        system_nginx: bool = False,
        *,
        conn: Connection | None = None,  # None: this machine's (tests pass fakes of both)
        servers: Servers = SERVERS,
        process_manager: Kind = "supervisor",
    ) -> None:
        check_here(process_manager, "this host's process_manager = 'systemd'")
        self.host = HostLayout(base, system_nginx)
        self.target = ops.Machine(
            LocalConnection() if conn is None else conn,
            self.host,
            self.host.wheels,
            listen,
            ops.app_user_here(app_user),
            servers,
            process_manager,
        )
        self.stream = stream
        self.locks = ExitStack()
        self.locked: set[str] = set()  # apps whose lock this session holds
        self.staged: dict[str, tuple[Switch, str]] = {}
        self.acme_due: set[str] = set()  # apps whose ACME certificate the lb must obtain
        self.reporter = Silent()

    def handlers(self) -> dict[type[Request[Any]], Callable[[Any], Reply]]:
        """Each request's handler: the agent's whole surface, in one table."""
        return {
            p.Hello: self.hello,
            p.Lock: self.lock,
            p.State: self.state,
            p.Receive: self.receive,
            p.Install: self.install,
            p.ConfigGet: self.config_get,
            p.ConfigPut: self.config_put,
            p.Stage: self.stage,
            p.Commit: self.commit,
            p.Abort: self.abort,
            p.RollbackTarget: self.rollback_target,
            p.Restart: self.restart,
            p.Scale: self.scale,
            p.Start: self.start,
            p.Stop: self.stop,
            p.Destroy: self.destroy,
            p.Status: self.status,
            p.Releases: self.releases,
            p.Freeze: self.freeze,
            p.Plan: self.plan,
            p.Lb: self.lb,
            p.LbRemove: self.lb_remove,
            p.Tls: self.tls,
        }

    def handle(self, request: Request[Any]) -> Reply:
        return self.handlers()[type(request)](request)

    def app(self, name: str) -> AppLayout:
        if not name or "/" in name or name.startswith("."):
            raise DeployError(f"bad app name {name!r}")
        return self.host.app(name)

    # --- facts and files ------------------------------------------------------------------

    def hello(self, request: p.Hello) -> p.HelloReply:
        """Facts about this host's runtime; with `app`, that app's state too, and with `lock`,
        the app's deploy lock taken first (one round trip for all three)."""
        venv = self.host.runtime_venv
        state = None
        if request.app:
            if request.lock:
                self.lock(p.Lock(app=request.app, **request.lock.model_dump()))
            state = self.state(p.State(app=request.app))
        return p.HelloReply(
            protocol=PROTOCOL_VERSION,
            version=__version__,
            runtime=_read(venv / ".shipyard-runtime"),
            interpreter=_read(venv / ".shipyard-interpreter"),
            python=".".join(map(str, sys.version_info[:3])),
            platform=sysconfig.get_platform(),
            libc=local_libc(),
            user=getpass.getuser(),
            wheels=self._wheel_index(),
            artifacts=sorted(m.parent.name for m in self.host.artifacts.glob(f"*/{MANIFEST}")),
            state=state,
        )

    def _wheel_index(self) -> dict[str, str]:
        try:
            index: dict[str, str] = json.loads(self.host.wheel_index.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {name: sha for name, sha in index.items() if (self.host.wheels / name).is_file()}

    def receive(self, request: p.Receive) -> p.ReceiveReply:
        """Wheels into the store, an artifact into artifacts/<id>; every file sha256-checked."""
        release = request.release
        wire.safe_relative(release)
        self.host.incoming.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{release}.", dir=self.host.incoming))
        try:
            written = wire.receive_files(self.stream, request.files, work)
            index = self._wheel_index()
            digests = {entry.path: entry.sha256 for entry in request.files}
            self.host.wheels.mkdir(parents=True, exist_ok=True)
            for path in written:
                rel = path.relative_to(work)
                if rel.parts[0] == "wheels":
                    os.replace(path, self.host.wheels / path.name)
                    index[path.name] = digests[rel.as_posix()]
            write_atomic(self.host.wheel_index, json.dumps(index, indent=1).encode())
            artifact_dir = work / "artifact"
            final = self.host.artifacts / release
            if request.reuse and (failed := self._reuse(request.reuse, artifact_dir)):
                return p.ReceiveReply(received=len(written), reuse_failed=failed)
            if artifact_dir.is_dir() and not (final / MANIFEST).is_file():
                self.host.artifacts.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(final, ignore_errors=True)
                artifact_dir.chmod(0o755)
                os.replace(artifact_dir, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._check_artifact(release, index)
        if request.install:  # and install it for this app, in the same round trip
            self.install(p.Install(app=request.install, release=release))
        return p.ReceiveReply(received=len(written))

    def _reuse(self, reuse: p.Reuse, into: Path) -> list[str]:
        """Take the files of an artifact this host has that the new one has unchanged (the
        deploying machine sent only their digests); the paths that could not be, if any.
        Hard links: an artifact's files never change once it is received."""
        base = self.host.artifacts / wire.safe_relative(reuse.base)
        failed = []
        for rel, sha256 in reuse.files.items():
            path = wire.safe_relative(rel)
            source = base / path
            try:  # the artifact may be pruned meanwhile: then it is sent after all
                if wire.sha256_of(source) != sha256:
                    raise ValueError(rel)
                (into / path).parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, into / path)
                except OSError:
                    shutil.copyfile(source, into / path)
            except (OSError, ValueError):
                failed.append(rel)
        return failed

    def _check_artifact(self, release: str, index: dict[str, str]) -> None:
        """Every wheel the manifest names is in the store with the manifest's digest, and
        the app's own wheel or tree is in the artifact with its digests."""
        artifact = load_artifact(self.host.artifacts / release)
        manifest = artifact.manifest
        wrong = [w.file for w in manifest.wheels if index.get(w.file) != w.sha256]
        own = (  # shown name -> (path in the artifact, sha256)
            {manifest.app_wheel.file: (f"app/{manifest.app_wheel.file}", manifest.app_wheel.sha256)}
            if manifest.app_wheel is not None
            else {f"{TREE}/{rel}": (f"{TREE}/{rel}", sha) for rel, sha in manifest.tree.items()}
        )
        for name, (rel, sha256) in own.items():
            path = artifact.path / rel
            if not path.is_file() or wire.sha256_of(path) != sha256:
                wrong.append(name)
        if wrong:
            raise DeployError(
                f"release {release}: missing or mismatched files on this host: "
                f"{', '.join(wrong[:5])}.",
                hint="Deploy again: the missing files are sent again.",
            )

    # --- the release state machine ------------------------------------------------------------

    def lock(self, request: p.Lock) -> p.Done:
        app = self.app(request.app)
        if app.name not in self.locked:
            self.locks.enter_context(app_lock(app, request.action, request.wait))
            self.locked.add(app.name)
            ops.recover_switch(self.target, app)  # its line goes to stderr
        return p.Done()

    def state(self, request: p.State) -> p.StateReply:
        app = self.app(request.app)
        state = load_state(app)
        installed = installed_releases(app)
        live = state.live if state.live in installed else None
        return p.StateReply(
            live=state.live,
            slot=state.slot,
            installed=installed,
            config_keys=sorted(load_config(app)),
            setup_done=load_setup(app) is not None,
            workdir=str(release_workdir(app, live)) if live else "",
        )

    def install(self, request: p.Install) -> p.Done:
        app = self.app(request.app)
        artifact = load_artifact(self.host.artifacts / wire.safe_relative(request.release))
        spec = Spec.model_validate_json((artifact.path / SPEC).read_text())
        app.check_socket_paths()
        ops.install_release(self.target, spec, app, artifact)
        state = load_state(app)
        ops.record_installed(state, artifact)
        save_state(app, state)
        return p.Done()

    def config_get(self, request: p.ConfigGet) -> p.ConfigReply:
        return p.ConfigReply(config=load_config(self.app(request.app)))

    def config_put(self, request: p.ConfigPut) -> p.Done:
        LocalConnection().put(config_upload(self.app(request.app), request.config))
        return p.Done()

    def stage(self, request: p.Stage) -> p.StageReply:
        app = self.app(request.app)
        # a release moves only under the app's lock: taken now if this session lacks it
        self.lock(p.Lock(app=app.name, action=request.action))
        wire.safe_relative(request.release)
        state = load_state(app)
        supervisor = self.target.servers.ensure_runtime(
            self.target.conn, self.host, self.target.run_as
        )
        state = ops.recover_orphans(self.target, supervisor, app, state)
        told = Silent()
        switch = ops.stage(
            self.target,
            supervisor,
            app,
            request.release,
            state,
            request.action,
            release_cmd=request.release_cmd,
            setup_on=request.setup_done_on,
            progress=told,
        )
        self.staged[app.name] = (switch, request.action)
        return p.StageReply(slot=switch.slot, previous=state.live, notes=told.notes)

    def commit(self, request: p.Commit) -> p.CommitReply:
        app = self.app(request.app)
        if app.name not in self.staged:
            raise DeployError(f"nothing is staged for {app.name} in this session")
        switch, action = self.staged.pop(app.name)
        state = load_state(app)
        outcome = ops.commit(app, switch, state, action)
        keep = release_spec(app, outcome.release).keep
        ops.prune_releases(app, state, keep)
        self._prune_artifacts(keep=max(keep * 2, 10))
        return p.CommitReply(**asdict(outcome))

    def abort(self, request: p.Abort) -> p.AbortReply:
        staged = self.staged.pop(self.app(request.app).name, None)
        if staged is not None:
            staged[0].abort()
        return p.AbortReply(aborted=staged is not None)

    def _prune_artifacts(self, keep: int) -> None:
        received = sorted(
            self.host.artifacts.glob(f"*/{MANIFEST}"), key=lambda m: m.stat().st_mtime
        )
        for manifest in received[:-keep]:
            shutil.rmtree(manifest.parent, ignore_errors=True)

    def rollback_target(self, request: p.RollbackTarget) -> p.RollbackTargetReply:
        app = self.app(request.app)
        return p.RollbackTargetReply(
            release=ops.rollback_target(app, load_state(app), request.to or None)
        )

    def restart(self, request: p.Restart) -> p.RestartReply:
        outcome = ops.restart(
            request.spec,
            self.target,
            self.reporter,
            config=request.config,
            action=request.action,
            lock_wait=request.wait,
        )
        return p.RestartReply(outcome=p.CommitReply(**asdict(outcome)) if outcome else None)

    def scale(self, request: p.Scale) -> p.ScaleReply:
        from shipyard.host.rescale import scale

        done = scale(request.spec, self.target, request.changes, self.reporter, request.wait)
        return p.ScaleReply(scale=done.scale, restarted=done.restarted)

    def start(self, request: p.Start) -> p.ProcessesReply:
        locked = request.spec.name in self.locked
        return p.ProcessesReply(processes=ops.start(request.spec, self.target, locked=locked))

    def stop(self, request: p.Stop) -> p.ProcessesReply:
        return p.ProcessesReply(processes=ops.stop(request.spec, self.target))

    def destroy(self, request: p.Destroy) -> p.DestroyReply:
        return p.DestroyReply(found=ops.destroy(request.spec, self.target, request.purge))

    def status(self, request: p.Status) -> p.StatusReply:
        from shipyard.host.status import app_status

        return p.StatusReply.model_validate(app_status(request.spec, self.target))

    def releases(self, request: p.Releases) -> p.ReleasesReply:
        app = self.app(request.app)
        state = load_state(app)
        on_disk = set(installed_releases(app))
        return p.ReleasesReply(
            releases=[
                p.ReleaseInfo(**asdict(r), on_disk=r.id in on_disk, live=r.id == state.live)
                for r in reversed(state.releases)
            ]
        )

    def freeze(self, request: p.Freeze) -> p.FreezeReply:
        from shipyard.host.freeze import live_pins

        return live_pins(self.app(request.app))

    def plan(self, request: p.Plan) -> p.PlanReply:
        """What a deploy of `release` would do here; reads, changes nothing."""
        from shipyard.host.planning import host_plan

        wire.safe_relative(request.release)
        self.app(request.spec.name)
        plan = host_plan(
            self.target,
            request.spec,
            request.release,
            None,
            name="",
            release_cmd=request.release_cmd,
            setup_on=request.setup_done_on,
            tree=request.tree,
        )
        return p.PlanReply(plan=plan)

    # --- load balancer ------------------------------------------------------------------------

    def lb(self, request: p.Lb) -> p.LbReply:
        """Point this host's nginx at the web hosts, draining the ones marked down.

        Static files are served at the edge from the release they were last updated to, so a
        rolling deploy keeps serving the old ones until every web host has switched.
        """
        app = self.app(request.app)
        release = request.release
        wire.safe_relative(release)
        current_link = app.root / "edge-current"
        if request.update_static:
            self._receive_edge(request, app)
        serving = current_link.resolve() if current_link.is_symlink() else None
        static = (
            {prefix: serving / name for prefix, name in request.static.items()}
            if serving is not None
            else {}
        )
        supervisor = self.target.servers.ensure_runtime(
            self.target.conn, self.host, self.target.run_as
        )
        app.logs.mkdir(parents=True, exist_ok=True)
        shown = serving.name if serving else release
        content = self._lb_site(request, app, shown, static)
        previous = app.site_file.read_bytes() if app.site_file.is_file() else None
        if previous != content:
            write_atomic(app.site_file, content)
            try:
                self.target.servers.reload_nginx(self.target.conn, self.host, supervisor)
            except BaseException:
                if previous is None:
                    app.site_file.unlink(missing_ok=True)
                else:
                    write_atomic(app.site_file, previous)
                raise
        self._lb_certificate(request, app, shown, static, supervisor)
        return p.LbReply(changed=previous != content)

    def tls(self, request: p.Tls) -> p.TlsReply:
        """Keep the app's HTTPS settings and files on this host; the next render (a
        switch, the lb's update) serves them."""
        app = self.app(request.app)
        self.host.runtime.mkdir(parents=True, exist_ok=True)
        incoming = Path(tempfile.mkdtemp(prefix=".tls.", dir=self.host.runtime))  # 0700
        try:
            wire.receive_files(self.stream, request.files, incoming)
            sent = {path.name: path.read_bytes() for path in incoming.iterdir() if path.is_file()}
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        before = (tls.load(app), tls.fingerprint(app))
        tls.apply(
            app,
            request.settings,
            certificate=sent.get("certificate"),
            key=sent.get("key"),
            ca_bundle=sent.get("ca_bundle"),
        )
        after = request.settings
        if after is not None and after.mode == "acme" and not after.behind_lb:
            previous = before[0]
            if previous is None or (previous.domains, previous.directory) != (
                after.domains,
                after.directory,
            ):
                self.acme_due.add(app.name)
        return p.TlsReply(changed=(tls.load(app), tls.fingerprint(app)) != before)

    def _lb_site(
        self, request: p.Lb, app: AppLayout, release: str, static: dict[str, Path]
    ) -> bytes:
        return render.lb_conf(
            request.spec,
            release,
            request.backends,
            static,
            self.target.listen,
            app.access_log,
            app.error_log,
            "combined" if self.host.system_nginx else "shipyard",
            tls.site(app),
        ).encode()

    def _lb_certificate(
        self,
        request: p.Lb,
        app: AppLayout,
        release: str,
        static: dict[str, Path],
        supervisor: SupervisorClient,
    ) -> None:
        """An ACME certificate the lb lacks (or whose names changed): obtained through the
        site just loaded (its challenge location), then served; the renewal loop kept."""
        settings = tls.load(app)
        if settings is None or settings.mode != "acme":
            tlsops.ensure_renewal(self.target.conn, app, supervisor)
            return
        if app.name in self.acme_due or not tls.TlsPaths(app).live_certificate.is_file():
            certbot = tls.find_certbot(self.target.conn.host)
            tls.run_certbot(tls.obtain_args(certbot, app, settings), app, settings)
            self.acme_due.discard(app.name)
            write_atomic(app.site_file, self._lb_site(request, app, release, static))
            self.target.servers.reload_nginx(self.target.conn, self.host, supervisor)
        tlsops.ensure_renewal(self.target.conn, app, supervisor)

    def _receive_edge(self, request: p.Lb, app: AppLayout) -> None:
        """The release's static files, from the payload, become the edge's current ones."""
        edges = self.host.lb_static / app.name
        current_link = app.root / "edge-current"
        edge = edges / request.release
        incoming = Path(tempfile.mkdtemp(prefix=".edge.", dir=self.host.runtime))
        try:
            wire.receive_files(self.stream, request.files, incoming)
            incoming.chmod(0o755)
            shutil.rmtree(edge, ignore_errors=True)
            edge.parent.mkdir(parents=True, exist_ok=True)
            os.replace(incoming, edge)
        finally:
            shutil.rmtree(incoming, ignore_errors=True)
        previous_edge = current_link.resolve() if current_link.is_symlink() else None
        app.root.mkdir(parents=True, exist_ok=True)
        replace_symlink(str(edge), current_link)
        for old in edges.iterdir():
            if old not in (edge, previous_edge):
                shutil.rmtree(old, ignore_errors=True)

    def lb_remove(self, request: p.LbRemove) -> p.LbRemoveReply:
        """Take the app off this load balancer: its site, its edge files, its HTTPS (the
        renewal loop, the certificate)."""
        app = self.app(request.app)
        had_site = app.site_file.is_file()
        had_renewal = app.tls_program_file.is_file()
        app.site_file.unlink(missing_ok=True)
        app.tls_program_file.unlink(missing_ok=True)
        servers = self.target.servers
        if (had_site or had_renewal) and servers.supervisor(self.host).is_running():
            supervisor = servers.ensure_runtime(self.target.conn, self.host, self.target.run_as)
            if had_renewal:
                supervisor.update()
            if had_site:
                servers.reload_nginx(self.target.conn, self.host, supervisor)
        shutil.rmtree(self.host.lb_static / app.name, ignore_errors=True)
        shutil.rmtree(app.root, ignore_errors=True)
        return p.LbRemoveReply(removed=had_site)

    # --- the loop -----------------------------------------------------------------------------

    def close(self) -> None:
        for name, (switch, _action) in list(self.staged.items()):
            try:
                switch.abort()
            except Exception:  # the connection is gone; supervisord will keep the old slot
                traceback.print_exc()
            self.staged.pop(name, None)
        self.locks.close()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def serve(session: Session, replies: IO[bytes]) -> None:
    """Answer requests until the stream ends, or until one cannot be read: what follows a
    request this agent does not understand (a payload, say) cannot be read either."""
    while True:
        try:
            message = wire.receive(session.stream)
        except wire.ProtocolError as err:
            _send(replies, _error("ProtocolError", str(err)))
            return
        if message is None:
            return
        reply, go_on = answer(session, message)
        _send(replies, reply)
        if not go_on:
            return


def answer(session: Session, message: dict[str, Any]) -> tuple[Reply | p.ErrorReply, bool]:
    """The reply to one message, and whether the stream is still in step after it."""
    op = str(message.get("op", ""))
    theirs = message.get("protocol", PROTOCOL_VERSION)
    if op == "hello" and theirs != PROTOCOL_VERSION:  # before its shape, which may differ too
        return _error(
            "ProtocolMismatch",
            f"the client speaks protocol {theirs}, this agent {PROTOCOL_VERSION}",
        ), False
    try:
        request = p.parse_request(message)
    except ValidationError as err:
        return _error("InvalidRequest", f"cannot read request {op!r}: {_summary(err)}"), False
    try:
        return session.handle(request), True
    except ShipyardError as err:
        return _error(type(err).__name__, err.message, err.hint, err.exit_code), True
    except wire.ProtocolError as err:
        return _error("ProtocolError", str(err)), False
    except Exception as exc:
        if (full := disk_full(exc)) is not None:
            return _error("DiskFull", full.message, full.hint, full.exit_code), True
        try:
            saved = f"The traceback is in {_crash_log(session.host)} on the host"
        except OSError as err:  # a full disk, say
            saved = f"Its traceback could not be saved on the host ({err})"
        return _error(
            "internal",
            f"internal error in shipyard's agent ({op}): {exc}",
            f"{saved}; please report it.",
            70,
        ), True


def _summary(err: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'op'}: {e['msg']}" for e in err.errors()[:5]
    )


def _send(replies: IO[bytes], reply: Reply | p.ErrorReply) -> None:
    body = reply.model_dump(mode="json", by_alias=True)
    wire.send(replies, body if isinstance(reply, p.ErrorReply) else {"ok": True, **body})


def _error(kind: str, message: str, hint: str | None = None, code: int = 1) -> p.ErrorReply:
    return p.ErrorReply(error=p.ErrorDetail(type=kind, message=message, hint=hint, exit_code=code))


def _crash_log(host: HostLayout) -> Path:
    host.logs.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="agent-crash-", suffix=".log", dir=host.logs)
    with os.fdopen(fd, "w") as handle:
        traceback.print_exc(file=handle)
    return Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipyard.host.agent")
    sub = parser.add_subparsers(dest="mode", required=True)
    session_args = sub.add_parser("session")
    session_args.add_argument("--base", required=True, type=Path)
    session_args.add_argument("--listen", required=True)
    session_args.add_argument("--app-user", default="")
    session_args.add_argument("--nginx", choices=("managed", "system"), default="managed")
    session_args.add_argument("--expect-lib", default="")
    session_args.add_argument("--linger", type=float, default=resident.LINGER)
    session_args.add_argument("--process-manager", choices=MANAGERS, default="supervisor")
    logs_args = sub.add_parser("logs")
    logs_args.add_argument("--base", required=True, type=Path)
    logs_args.add_argument("--app", required=True)
    logs_args.add_argument("--process")
    logs_args.add_argument("--lines", type=int, default=50)
    logs_args.add_argument("--follow", action="store_true")
    logs_args.add_argument("--process-manager", choices=MANAGERS, default="supervisor")
    args = parser.parse_args(argv)
    os.umask(0o022)
    os.environ.pop("PYTHONPATH", None)  # loaded already; the processes it starts must not see it
    if args.mode == "logs":
        journald = args.process_manager == "systemd"
        return _logs(args.base, args.app, args.process, args.lines, args.follow, journald)
    loaded = _marks(args.base)  # the code this process runs
    mark = loaded[0]
    if args.expect_lib and mark != args.expect_lib:
        print(
            f"shipyard's agent here is {mark or 'unknown'}, not {args.expect_lib}", file=sys.stderr
        )
        return NOT_READY
    # Replies get the real stdout; anything else that prints goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    try:
        session = Session(
            args.base,
            args.listen,
            sys.stdin.buffer,
            args.app_user,
            args.nginx == "system",
            process_manager=args.process_manager,
        )
    except ShipyardError as err:
        _send(replies, _error(type(err).__name__, err.message, err.hint))
        return 1
    try:
        serve(session, replies)
    finally:
        session.close()
    replies.close()
    if args.linger > 0:
        resident.stay_resident(
            session.host.runtime,
            args.linger,
            loaded,
            lambda: _marks(args.base),
            lambda header, reader, writer, ready: _resident_session(
                args.base, header, reader, writer, ready
            ),
        )
    return 0


def _marks(base: Path) -> tuple[str, str]:
    """What code this agent runs: its lib's id and its runtime's id, as they are on disk."""
    host = HostLayout(base)
    return (
        _read(Path(__file__).resolve().parents[2] / ".shipyard-lib"),
        _read(host.runtime_venv / ".shipyard-runtime"),
    )


def _resident_session(
    base: Path,
    header: dict[str, Any],
    reader: IO[bytes],
    writer: IO[bytes],
    ready: Callable[[], None],
) -> None:
    """One session served by a resident agent, as `session` serves one over ssh. What it
    cannot start (another base, an error in the session's set-up) is left to a full agent,
    which reports it over ssh as usual."""
    if Path(str(header.get("base"))) != base:
        return
    try:
        session = Session(
            base,
            str(header["listen"]),
            reader,
            str(header.get("app_user", "")),
            header.get("nginx") == "system",
            process_manager=_manager(header.get("process_manager")),
        )
    except (ShipyardError, KeyError):
        return
    ready()
    try:
        serve(session, writer)
    finally:
        session.close()


def _manager(value: object) -> Kind:
    return "systemd" if value == "systemd" else "supervisor"


def _logs(
    base: Path, name: str, process: str | None, lines: int, follow: bool, journald: bool = False
) -> int:
    from shipyard.host import logs

    app = HostLayout(base).app(name)
    state = load_state(app)
    if state.live is None:
        print(f"app {name} is not deployed on this host", file=sys.stderr)
        return 1

    def emit(line: str) -> None:
        print(line, flush=True)

    try:
        logs.show(
            app, release_spec(app, state.live), process, lines, follow, emit, journald=journald
        )
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
