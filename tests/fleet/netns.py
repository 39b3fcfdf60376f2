"""Throwaway "remote hosts" for tests: Linux network namespaces, each with its own sshd.

    with Fleet(web=3, lb=True) as fleet:
        subprocess.run(fleet.ssh_argv("web1", "hostname -I"), check=True)

Topology, per fleet (all names carry the fleet's prefix, `sy<pid>` or `sy<pid>.<n>`):

    root namespace                 <prefix>-hub namespace           <prefix>-web1 ...
    veth <prefix> 10.213.Y.1/24 -- veth uplink - bridge br0 - veth web1 -- veth eth0 10.213.Y.11

The bridge sits in a namespace of its own rather than in the root namespace: bridged packets
between hosts (lb1 -> web1) then only meet that namespace's empty netfilter tables. On machines
running Docker, br_netfilter is loaded and the root FORWARD policy is DROP, which would silently
drop host-to-host traffic on a root-namespace bridge; this way no firewall rule is touched.

Root only (namespaces, veths, sshd). No pytest dependency: usable from scripts and benchmarks.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

SSHD = "/usr/sbin/sshd"  # absolute: sshd re-executes itself for every connection
PRIVSEP_DIR = Path("/run/sshd")
SUPERNET = ipaddress.IPv4Network("10.213.0.0/16")  # one /24 of it per fleet
FIRST_HOST = 11  # web1 = .11, web2 = .12, ...; .1 is the root namespace

_fleet_numbers = itertools.count()


class FleetFactory(Protocol):
    """What the `make_fleet` fixture is: Fleet's constructor, closed after the test."""

    def __call__(self, web: int = 3, lb: bool = True) -> Fleet: ...


class FleetError(RuntimeError):
    """The fleet could not be set up; the message says which command failed and why."""


def preflight() -> None:
    """Raise FleetError with the reason if this machine cannot host a fleet."""
    if os.geteuid() != 0:
        raise FleetError("test hosts need root (network namespaces, veth pairs, sshd)")
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            raise FleetError(f"{tool} is not installed (scripts/setup --test installs it)")
    if not os.access(SSHD, os.X_OK):
        raise FleetError(f"{SSHD} is missing (scripts/setup --test installs openssh-server)")
    probe = f"sy{os.getpid()}-probe-{os.urandom(3).hex()}"
    _run(["ip", "netns", "add", probe])
    _run(["ip", "netns", "delete", probe])


class Host:
    """One test host: a network namespace with an address on the fleet's bridge and an sshd."""

    def __init__(self, fleet: Fleet, name: str, address: str) -> None:
        self.fleet = fleet
        self.name = name
        self.namespace = f"{fleet.prefix}-{name}"
        self.address = address
        self.base_dir = fleet.root / name  # short on purpose: unix socket paths < 107 bytes
        self._sshd_dir = fleet.ssh_dir / name
        self.host_key = self._sshd_dir / "host_ed25519"
        self.sshd_config = self._sshd_dir / "sshd_config"
        self.sshd_log = self._sshd_dir / "sshd.log"
        self._sshd: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} netns={self.namespace}>"

    @property
    def sshd_pid(self) -> int | None:
        """The pid of the listening sshd, None while it is stopped."""
        return self._sshd.pid if self._sshd is not None else None

    @property
    def public_host_key(self) -> str:
        """`ssh-ed25519 AAAA...` of the key sshd serves now."""
        algorithm, blob = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"{algorithm} {blob}"

    def exec(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float | None = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside this host's namespace (no ssh involved), capturing its output."""
        return _run(
            ["ip", "netns", "exec", self.namespace, *argv],
            check=check,
            timeout=timeout,
            input=input,
        )

    def pids(self) -> list[int]:
        """Every process whose network namespace is this host's (sshd, its sessions, apps)."""
        return _netns_pids(self.namespace)

    def start_sshd(self) -> None:
        """Start sshd (if stopped) and wait until it accepts connections."""
        self._spawn_sshd()
        _wait_for_port([self])

    def stop_sshd(self, *, drop_sessions: bool = True) -> None:
        """Stop sshd as a dying host would: no new connections and, unless drop_sessions is
        False, open ones (ControlMaster masters included) cut. Processes that detached from
        their session (setsid: app servers, supervisord) keep running."""
        proc, self._sshd = self._sshd, None
        if proc is None:
            return
        # The per-connection sshd processes are descendants of the listener: collect them
        # before it dies and they get reparented out of reach.
        sessions = _descendants(proc.pid) if drop_sessions else []
        _kill([proc.pid, *sessions], reap=[proc])

    def limit_inbound(self, rate: str | None) -> None:
        """Shape what the host receives to `rate` (tc's units: "2mbit"), or lift the limit
        (None): a slow link, so a transfer to it lasts long enough to be cut."""
        hub = self.fleet.hub_namespace
        _run(["ip", "netns", "exec", hub, "tc", "qdisc", "del", "dev", self.name, "root"],
             check=False)  # fmt: skip
        if rate is not None:
            _run(
                ["ip", "netns", "exec", hub, "tc", "qdisc", "add", "dev", self.name, "root",
                 "tbf", "rate", rate, "burst", "32kbit", "latency", "2s"]
            )  # fmt: skip

    def in_mounts(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run argv in the mount namespace the host's processes see (sshd's: `ip netns exec`
        gave it one of its own), for mounts only the host sees, such as a small disk."""
        pid = self.sshd_pid
        if pid is None:
            raise FleetError(f"{self.name}: sshd is stopped")
        return _run(["nsenter", "-t", str(pid), "-m", *argv])

    def replace_host_key(self) -> None:
        """Give sshd a brand-new host key, as a reinstalled host (or an impostor) would have:
        the fleet's known_hosts no longer matches, so strict checking refuses the host."""
        running = self._sshd is not None
        self.stop_sshd()
        self.host_key.unlink(missing_ok=True)
        self.host_key.with_suffix(".pub").unlink(missing_ok=True)
        _keygen(self.host_key, comment=f"host {self.name}")
        if running:
            self.start_sshd()

    # --- internals ---------------------------------------------------------------------

    def _write_sshd_config(self) -> None:
        self.sshd_config.write_text(
            "\n".join(
                [
                    f"ListenAddress {self.address}:22",
                    f"HostKey {self.host_key}",
                    f"PidFile {self._sshd_dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.fleet.authorized_keys}",
                    f"UsePAM {'yes' if _root_password_locked() else 'no'}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "StrictModes no",
                    "MaxSessions 64",
                    "MaxStartups 100:30:200",
                    "LogLevel ERROR",
                    "PrintMotd no",
                    "PrintLastLog no",
                    "UseDNS no",
                    # OpenSSH >= 9 scp speaks sftp: deploy tools may copy files with it.
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )

    def _spawn_sshd(self) -> None:
        if self._sshd is not None and self._sshd.poll() is None:
            return
        # `ip netns exec` execs sshd in place, so the pid we hold is sshd's own. -D keeps it
        # in the foreground (our child, killed by pid); -E keeps its errors out of syslog.
        argv = ["ip", "netns", "exec", self.namespace, SSHD, "-D", "-f", str(self.sshd_config)]
        self._sshd = subprocess.Popen(
            [*argv, "-E", str(self.sshd_log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal must not reach it first
        )


class Fleet:
    """Hosts web1..webN (and lb1) in network namespaces, reachable over SSH from here."""

    def __init__(self, web: int = 3, lb: bool = True) -> None:
        if web < 0 or web + lb == 0 or web > 80:
            raise ValueError("a fleet has between 1 and 80 web hosts (or just lb1)")
        self.prefix = _free_prefix()
        self._owner = os.getpid()  # a forked child inherits atexit hooks, not the fleet
        self._uplink = self.prefix  # root-namespace end of the hub link; <= 15 chars
        self._hub = f"{self.prefix}-hub"
        self._namespaces: list[str] = []  # created ones only, in order
        self._uplink_created = False
        self._closed = False
        self.root = Path(tempfile.mkdtemp(prefix=f"{self.prefix}.", dir="/tmp"))
        self.root.chmod(0o755)  # apps deployed under it may run as other users
        self.ssh_dir = self.root / "ssh"
        self.ssh_config = self.ssh_dir / "ssh_config"
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.client_key = self.ssh_dir / "client_ed25519"
        self.authorized_keys = self.ssh_dir / "authorized_keys"
        self.network = ipaddress.IPv4Network("0.0.0.0/32")
        self.gateway = ""
        self.hosts: dict[str, Host] = {}
        atexit.register(self.close)  # safety net when a test run dies without closing
        try:
            self._setup([f"web{i}" for i in range(1, web + 1)] + (["lb1"] if lb else []))
        except BaseException:
            self.close()
            raise

    # --- access ------------------------------------------------------------------------

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts.values())

    @property
    def web(self) -> list[Host]:
        return [host for name, host in self.hosts.items() if name.startswith("web")]

    @property
    def lb(self) -> Host | None:
        return self.hosts.get("lb1")

    @property
    def hub_namespace(self) -> str:
        """The namespace of the bridge, where each host's link has its other end."""
        return self._hub

    @property
    def namespaces(self) -> list[str]:
        """Every namespace this fleet created (hosts and the hub), while it is open."""
        return list(self._namespaces)

    def ssh_argv(self, host: Host | str, *command: str) -> list[str]:
        """`ssh -F <fleet ssh_config> <name> [command...]`: strict host keys, the fleet's key."""
        name = host.name if isinstance(host, Host) else host
        return ["ssh", "-F", str(self.ssh_config), name, *command]

    def ssh(
        self, host: Host | str, command: str, *, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a shell command on a host over SSH; never raises on failure (check returncode)."""
        return _run(self.ssh_argv(host, command), check=False, timeout=timeout)

    def write_known_hosts(self) -> None:
        """(Re)write known_hosts with every host's current key: trust after replace_host_key."""
        lines = [f"{h.name},{h.address} {h.public_host_key}" for h in self.hosts.values()]
        self.known_hosts.write_text("".join(line + "\n" for line in lines))

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill what runs in the fleet, delete its links, namespaces and files. Idempotent;
        touches only what this fleet created (its sshd pids, its namespaces' processes)."""
        if self._closed or os.getpid() != self._owner:
            return
        self._closed = True
        atexit.unregister(self.close)
        for host in self.hosts.values():
            host.stop_sshd(drop_sessions=False)  # sessions die with the namespace's processes
        # Whatever still runs in our namespaces was started there over SSH (or by exec):
        # supervisord, app servers, http.server... They hold the namespaces alive.
        _kill_namespace_processes(self._namespaces)
        if self._uplink_created:
            _run(["ip", "link", "delete", self._uplink], check=False)
            self._uplink_created = False
        for namespace in reversed(self._namespaces):
            _run(["ip", "netns", "delete", namespace], check=False)
        self._namespaces.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    # --- setup -------------------------------------------------------------------------

    def _setup(self, names: list[str]) -> None:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        self.ssh_dir.mkdir()
        self.network = _free_subnet()
        self.gateway = str(self.network[1])
        self.hosts = {
            name: Host(self, name, str(self.network[FIRST_HOST + i]))
            for i, name in enumerate(names)
        }
        # Keys first: ssh-keygen processes run while the kernel builds the network.
        keygens = [_keygen_start(self.client_key, comment=f"client {self.prefix}")]
        for host in self.hosts.values():
            host._sshd_dir.mkdir()
            host.base_dir.mkdir(mode=0o755)
            keygens.append(_keygen_start(host.host_key, comment=f"host {host.name}"))
        self._build_network()
        for proc in keygens:
            _finish(proc)
        self.authorized_keys.write_text(self.client_key.with_suffix(".pub").read_text())
        for host in self.hosts.values():
            host._write_sshd_config()
            host._spawn_sshd()
        self.write_known_hosts()
        self._write_ssh_config()
        _wait_for_port(list(self.hosts.values()))

    def _build_network(self) -> None:
        for namespace in [self._hub, *(host.namespace for host in self.hosts.values())]:
            _run(["ip", "netns", "add", namespace])
            self._namespaces.append(namespace)
        # Creating the uplink is what claims the subnet on this machine (see _free_subnet).
        _run(
            ["ip", "link", "add", self._uplink, "type", "veth", "peer", "name", "uplink",
             "netns", self._hub]
        )  # fmt: skip
        self._uplink_created = True
        root_side = [
            f"address add {self.gateway}/{self.network.prefixlen} dev {self._uplink}",
            f"link set {self._uplink} up",
        ]
        hub = ["link set lo up", "link add name br0 type bridge", "link set br0 up"]
        hub.append("link set uplink master br0 up")
        for host in self.hosts.values():
            # Both ends placed at creation: the root namespace never sees these names.
            _run(
                ["ip", "-n", host.namespace, "link", "add", "eth0", "type", "veth", "peer",
                 "name", host.name, "netns", self._hub]
            )  # fmt: skip
            hub.append(f"link set {host.name} master br0 up")
            _ip_batch(
                host.namespace,
                [
                    "link set lo up",
                    f"address add {host.address}/{self.network.prefixlen} dev eth0",
                    "link set eth0 up",
                ],
            )
        _ip_batch(None, root_side)
        _ip_batch(self._hub, hub)

    def _write_ssh_config(self) -> None:
        blocks = []
        for host in self.hosts.values():
            blocks.append(
                f"Host {host.name} {host.address}\n"
                f"    HostName {host.address}\n"
                "    Port 22\n"
                "    User root\n"
                f"    IdentityFile {self.client_key}\n"
                "    IdentitiesOnly yes\n"
                "    IdentityAgent none\n"  # the developer's agent keys are not ours
                f"    UserKnownHostsFile {self.known_hosts}\n"
                "    GlobalKnownHostsFile /dev/null\n"
                "    StrictHostKeyChecking yes\n"
                "    UpdateHostKeys no\n"  # known_hosts is the test's to change, not ssh's
                "    CheckHostIP no\n"
                "    BatchMode yes\n"
                "    ConnectTimeout 5\n"
            )
        self.ssh_config.write_text("\n".join(blocks))


# --- helpers ---------------------------------------------------------------------------


def _run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = 30,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv),
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise FleetError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _ip_batch(namespace: str | None, commands: list[str]) -> None:
    """Several `ip` commands in one process (inside namespace if given)."""
    argv = ["ip", *(["-n", namespace] if namespace else []), "-batch", "-"]
    _run(argv, input="".join(command + "\n" for command in commands))


def _keygen_start(path: Path, *, comment: str) -> subprocess.Popen[bytes]:
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
    return subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(proc: subprocess.Popen[bytes]) -> None:
    out, _ = proc.communicate(timeout=30)
    if proc.returncode != 0:
        raise FleetError(f"{proc.args!r} failed: {out.decode(errors='replace').strip()}")


def _keygen(path: Path, *, comment: str) -> None:
    _finish(_keygen_start(path, comment=comment))


def _root_password_locked() -> bool:
    """With UsePAM no, sshd refuses even key logins to an account whose password is locked
    (`!` in /etc/shadow, as on some images); PAM's account check does not, so use it there."""
    try:
        for line in Path("/etc/shadow").read_text().splitlines():
            if line.startswith("root:"):
                return line.split(":")[1].startswith("!")
    except OSError:
        pass
    return False


def _free_prefix() -> str:
    """`sy<pid>`, then `sy<pid>.1`...: unique in this process, and never the name of a leftover
    of a killed run whose pid was the same (we must not adopt, nor delete, what is not ours)."""
    pid = os.getpid()
    while True:
        number = next(_fleet_numbers)
        prefix = f"sy{pid}" + (f".{number}" if number else "")
        taken = Path("/run/netns").glob(f"{prefix}-*")
        if not any(taken) and not Path("/sys/class/net", prefix).exists():
            return prefix


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of SUPERNET that no address or route of this machine overlaps, starting from one
    derived from our pid so that parallel runs (pytest-xdist workers) start apart."""
    used: list[ipaddress.IPv4Network] = []
    for entry in json.loads(_run(["ip", "-j", "-4", "address", "show"]).stdout or "[]"):
        for info in entry.get("addr_info", []):
            used.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]"):
        if route.get("dst") not in (None, "default"):
            used.append(ipaddress.IPv4Network(route["dst"], strict=False))
    subnets = list(SUPERNET.subnets(new_prefix=24))
    start = os.getpid() % len(subnets)
    for subnet in subnets[start:] + subnets[:start]:
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise FleetError(f"no free /24 left in {SUPERNET} on this machine")


def _wait_for_port(hosts: list[Host], *, timeout: float = 10) -> None:
    """Until every host's sshd accepts TCP connections on port 22 (from the root namespace)."""
    deadline = time.monotonic() + timeout
    waiting = list(hosts)
    while waiting:
        host = waiting[0]
        try:
            with socket.create_connection((host.address, 22), timeout=2) as conn:
                if conn.recv(256).startswith(b"SSH-"):
                    # Answering the banner keeps a misleading "kex_exchange_identification:
                    # Connection closed" error out of sshd.log.
                    conn.sendall(b"SSH-2.0-shipyard-fleet-probe\r\n")
                    waiting.pop(0)
                    continue
        except OSError:
            pass
        proc = host._sshd
        if proc is None or proc.poll() is not None:
            log = host.sshd_log.read_text().strip() if host.sshd_log.exists() else ""
            raise FleetError(f"sshd of {host.name} exited: {log or 'no log'}")
        if time.monotonic() > deadline:
            raise FleetError(f"sshd of {host.name} did not listen on {host.address}:22")
        time.sleep(0.01)


def _netns_pids(namespace: str) -> list[int]:
    proc = _run(["ip", "netns", "pids", namespace], check=False)
    return [int(word) for word in proc.stdout.split()] if proc.returncode == 0 else []


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # comm may contain spaces and ')'
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill(
    pids: Sequence[int], *, reap: Sequence[subprocess.Popen[bytes]] = (), grace: float = 2
) -> None:
    """SIGTERM, then SIGKILL what is still alive after `grace` seconds; reap our children."""
    _signal(pids, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        for proc in reap:
            proc.poll()
        alive = [pid for pid in alive if _alive(pid)]
        if alive:
            time.sleep(0.01)
    _signal(alive, signal.SIGKILL)
    for proc in reap:
        proc.wait(timeout=5)


def _kill_namespace_processes(namespaces: Sequence[str], *, grace: float = 2) -> None:
    """Kill everything running in these namespaces, including what forks while we do: SIGTERM
    once each (supervisord stops its programs), SIGKILL whatever remains after `grace`."""
    deadline = time.monotonic() + grace
    termed: set[int] = set()
    while True:
        pids = [pid for namespace in namespaces for pid in _netns_pids(namespace)]
        if not pids:
            return
        now = time.monotonic()
        if now > deadline + 5:
            return  # unkillable (D state): deleting the namespace names still works
        if now > deadline:
            _signal(pids, signal.SIGKILL)
        else:
            _signal([pid for pid in pids if pid not in termed], signal.SIGTERM)
            termed.update(pids)
        time.sleep(0.02)


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    """True while pid runs (a zombie counts as gone: it holds nothing but its pid)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
