"""HTTPS on a host, done: obtain an ACME certificate after a deploy, renew it (the renewal
loop and `shipyard tls renew`), and make nginx serve what is on disk now."""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shipyard.host import tls
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.local import LocalConnection
from shipyard.host.servers import SERVERS, Servers
from shipyard.host.state import app_lock, load_state
from shipyard.host.steps import Connection, Upload
from shipyard.host.supervisor import SupervisorClient
from shipyard.host.switch import site_content

# How often the renewal loop asks certbot: it renews under 30 days left, so twice a day
# leaves weeks of retries; a random offset spreads hosts apart (Let's Encrypt asks for it).
RENEW_EVERY = 12 * 3600
RENEW_JITTER = 3600
RETRY_AFTER = 3600
LOCK_WAIT = 1800  # a deploy holds the app's lock meanwhile


@dataclass(frozen=True)
class Renewed:
    renewed: bool  # a new certificate is served
    fingerprint: str | None  # sha256 of the certificate nginx serves


def refresh_site(
    conn: Connection,
    app: AppLayout,
    supervisor: SupervisorClient,
    servers: Servers = SERVERS,
) -> None:
    """Rewrite the live site file from what is on disk now (a certificate obtained) and
    reload nginx gracefully; an app not serving yet has nothing to rewrite."""
    state = load_state(app)
    settings = tls.load(app)
    if state.live is None or state.slot is None or settings is None:
        return
    nginx = servers.find_nginx(conn.host)
    content = site_content(app, state.live, state.slot, settings.plain_listen, nginx)
    conn.put(Upload(content.encode(), PurePosixPath(app.site_file)))
    servers.reload_nginx(conn, app.host, supervisor)


def obtain(
    conn: Connection,
    app: AppLayout,
    supervisor: SupervisorClient,
    previous: tls.TlsSettings | None,
    servers: Servers = SERVERS,
) -> bool:
    """After a deploy's switch: get the ACME certificate if there is none yet, or if the
    domains changed, and serve it; True when certbot ran."""
    settings = tls.load(app)
    if settings is None or settings.mode != "acme":
        return False
    have = tls.TlsPaths(app).live_certificate.is_file()
    same = (
        previous is not None
        and previous.domains == settings.domains
        and previous.directory == settings.directory
    )
    if have and same:
        return False
    certbot = tls.find_certbot(conn.host)
    tls.run_certbot(tls.obtain_args(certbot, app, settings), app, settings)
    refresh_site(conn, app, supervisor, servers)
    return True


def renew(
    conn: Connection,
    app: AppLayout,
    supervisor: SupervisorClient,
    *,
    force: bool,
    servers: Servers = SERVERS,
) -> Renewed:
    """Renew the app's ACME certificate (under 30 days left, or now with `force`); a new
    one is served after a graceful reload: no request is dropped."""
    settings = tls.load(app)
    before = tls.fingerprint(app)
    if settings is None or settings.mode != "acme":
        return Renewed(False, before)
    certbot = tls.find_certbot(conn.host)
    if not tls.TlsPaths(app).live_certificate.is_file():
        tls.run_certbot(tls.obtain_args(certbot, app, settings), app, settings)
    else:
        tls.run_certbot(tls.renew_args(certbot, app, force=force), app, settings)
    after = tls.fingerprint(app)
    if after == before:
        return Renewed(False, after)
    if before is None:  # the first certificate: the site gets its HTTPS server now
        refresh_site(conn, app, supervisor, servers)
    else:
        # the paths are certbot's `live/` links, the same as before: a graceful reload
        # makes nginx read the files again (an app's site or an lb's alike)
        servers.reload_nginx(conn, app.host, supervisor)
    return Renewed(True, after)


# --- the renewal loop: a supervisor program per app with an ACME certificate ---------------


def renewal_program_name(app: AppLayout) -> str:
    return f"{app.name}-tls-renew"


def renewal_program(app: AppLayout, python: str) -> str:
    """The supervisor program that renews the app's certificate on the host."""
    argv: tuple[str, ...] = (python, "-m", "shipyard.host.tlsops", str(app.host.base), app.name)
    if app.host.system_nginx:
        argv += ("--system-nginx",)
    lines = [
        f"; Managed by shipyard: renews the ACME certificate of app {app.name}.",
        f"[program:{renewal_program_name(app)}]",
        f"command = {shlex.join(argv)}",
        "autostart = true",
        "autorestart = true",
        "startsecs = 1",
        "stopsignal = TERM",
        "stopwaitsecs = 10",
        "redirect_stderr = true",
        f"stdout_logfile = {app.logs / 'tls-renew.log'}",
        "stdout_logfile_maxbytes = 1MB",
        "stdout_logfile_backups = 2",
    ]
    return "\n".join(lines) + "\n"


def ensure_renewal(conn: Connection, app: AppLayout, supervisor: SupervisorClient) -> None:
    """The renewal loop runs when the app has an ACME certificate, and only then."""
    settings = tls.load(app)
    path = PurePosixPath(app.tls_program_file)
    if settings is None or settings.mode != "acme":
        if conn.read(path) is not None:
            conn.remove(path)
            supervisor.update()
        return
    content = renewal_program(app, sys.executable).encode()
    if conn.read(path) != content:
        conn.put(Upload(content, path))
        supervisor.update()


def renewal_loop(app: AppLayout, supervisor: SupervisorClient) -> None:
    """Ask certbot twice a day; it renews under 30 days left; nginx reloads when it did.
    Under the app's lock, as a deploy and `shipyard tls renew`: one certbot at a time."""
    log = logging.getLogger("shipyard.tls")
    conn = LocalConnection()
    while True:
        delay = RENEW_EVERY + random.uniform(0, RENEW_JITTER)
        try:
            with app_lock(app, "tls renew", LOCK_WAIT):
                done = renew(conn, app, supervisor, force=False)
            state = "renewed, nginx reloaded" if done.renewed else "still valid"
            log.info("%s: %s", app.name, state)
        except Exception as err:  # the loop outlives a failed attempt: it retries sooner
            log.warning("%s: renewal failed (next try in an hour): %s", app.name, err)
            delay = RETRY_AFTER
        time.sleep(delay)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Renew an app's ACME certificate forever.")
    parser.add_argument("base")
    parser.add_argument("app")
    parser.add_argument("--system-nginx", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    host = HostLayout(Path(args.base), system_nginx=args.system_nginx)
    renewal_loop(host.app(args.app), SERVERS.supervisor(host))


if __name__ == "__main__":
    main()
