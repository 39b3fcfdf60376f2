"""What runs for a base directory, read from /proc: who holds its ports, its app sockets and
its pid files. The facts heal.py decides from; the parsers are pure, `observe()` reads.

A process is found by what it holds, never by its name alone: a listening TCP socket on a
port of the base's nginx sites (sockdiag.py, matched to /proc/<pid>/fd by inode), a
listening unix socket under the base (/proc/net/unix), or the pid in a pid file.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from shipyard.host import sockdiag
from shipyard.host.layout import HostLayout
from shipyard.host.supervisor import SupervisorClient

UNIX_ACCEPTCON = 0x10000  # __SO_ACCEPTCON: the socket listens
_LISTEN_DIRECTIVE = re.compile(r"^\s*listen\s+([^;\s]+)", re.M)
_SOCKET_LINK = re.compile(r"^socket:\[(\d+)\]$")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    comm: str
    cmdline: str
    of_base: bool = True  # names the base or has a file under it open (nginx: its logs)

    @property
    def is_nginx_master(self) -> bool:
        return self.comm == "nginx" and self.cmdline.startswith("nginx: master")


@dataclass(frozen=True)
class Listener:
    """A listening socket (a TCP port or a unix socket's path) and the processes holding it,
    each with its fd number."""

    address: str
    inode: int
    holders: tuple[tuple[int, int], ...] = ()

    @property
    def pids(self) -> set[int]:
        return {pid for pid, _ in self.holders}


@dataclass(frozen=True)
class Facts:
    """The runtime of one base directory as it is now."""

    base: Path
    supervisord: int | None = None  # the pid of the supervisord answering on its socket
    nginx: int | None = None  # the managed nginx master: supervisord's nginx program, alive
    nginx_state: str = ""  # supervisord's state of its nginx program ("" if none)
    ports: tuple[Listener, ...] = ()  # listeners on the ports of the base's nginx sites
    sockets: tuple[Listener, ...] = ()  # unix listeners under the base (the apps' servers)
    nginx_pidfile: int | None = None  # the live nginx process named by the base's pid file
    procs: Mapping[int, Proc] = field(default_factory=dict)
    system_nginx: bool = False

    def orphaned(self, pid: int, root: int | None) -> bool:
        """`pid` runs (as far as /proc showed) and is not `root` nor one of its descendants."""
        return pid in self.procs and not self.descends(pid, root)

    def descends(self, pid: int, root: int | None) -> bool:
        """`pid` is `root` or one of its descendants."""
        seen = 0
        while root is not None and pid > 1 and seen < 64:
            if pid == root:
                return True
            proc = self.procs.get(pid)
            if proc is None:
                return False
            pid, seen = proc.ppid, seen + 1
        return False


# --- parsers (pure) ---------------------------------------------------------------------------


def site_ports(confs: Iterable[str]) -> set[int]:
    """The TCP ports the `listen` directives of nginx server blocks name."""
    ports = set()
    for text in confs:
        for value in _LISTEN_DIRECTIVE.findall(text):
            port = value.rsplit(":", 1)[-1]
            if port.isdigit():
                ports.add(int(port))
    return ports


def unix_listeners(text: str) -> list[tuple[str, int]]:
    """(path, inode) of each listening unix socket in /proc/net/unix that has a path."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not int(fields[3], 16) & UNIX_ACCEPTCON:
            continue
        found.append((fields[7], int(fields[6])))
    return found


def cgroup_unit(text: str) -> str | None:
    """The systemd service a process runs in, from /proc/<pid>/cgroup (the unified
    hierarchy's line, or the v1 name=systemd one); None outside any service."""
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers in ("", "name=systemd"):
            leaf = path.rstrip("/").rpartition("/")[2]
            if leaf.endswith(".service"):
                return leaf
    return None


def app_slot(base: Path, socket: str) -> tuple[str, str] | None:
    """(app, slot) of an app server's socket, `<base>/<app>/shared/run/<slot>.sock`."""
    parts = Path(socket).relative_to(base).parts
    if len(parts) == 4 and parts[1:3] == ("shared", "run") and parts[3].endswith(".sock"):
        return parts[0], parts[3].removesuffix(".sock")
    return None


def run_by_systemd(base: Path, listener: Listener, unit_of: Mapping[int, str | None]) -> bool:
    """An app server systemd runs (process_manager = "systemd"): every holder of its socket
    is in that slot's unit, `<app>-web@<slot>.service`. Not an orphan of supervisord."""
    found = app_slot(base, listener.address)
    if found is None or not listener.holders:
        return False
    unit = f"{found[0]}-web@{found[1]}.service"
    return all(unit_of.get(pid) == unit for pid in listener.pids)


def parse_stat(text: str) -> tuple[str, int]:
    """(comm, ppid) from /proc/<pid>/stat (comm may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    return head.partition("(")[2], int(rest.split()[1])


# --- reading /proc ----------------------------------------------------------------------------


def read_proc(pid: int) -> Proc | None:
    try:
        comm, ppid = parse_stat(Path(f"/proc/{pid}/stat").read_text())
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return Proc(pid, ppid, comm, raw.replace(b"\0", b" ").decode(errors="replace").strip())


def alive(pid: int) -> bool:
    proc = read_proc(pid)
    return proc is not None and not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def socket_holders(inodes: set[int]) -> dict[int, list[tuple[int, int]]]:
    """inode -> [(pid, fd)] for every process of this machine holding one of `inodes`."""
    found: dict[int, list[tuple[int, int]]] = {inode: [] for inode in inodes}
    if not inodes:
        return found
    with os.scandir("/proc") as entries:
        pids = [int(entry.name) for entry in entries if entry.name.isdigit()]
    for pid in pids:
        for fd, inode in sockets_of(pid):
            if inode in found:
                found[inode].append((pid, fd))
    return found


def sockets_of(pid: int) -> list[tuple[int, int]]:
    """(fd, inode) of each socket `pid` holds (none if it is gone or not ours to look into)."""
    found = []
    try:
        with os.scandir(f"/proc/{pid}/fd") as fds:
            for fd in fds:
                with contextlib.suppress(OSError):
                    if match := _SOCKET_LINK.match(os.readlink(fd.path)):
                        found.append((int(fd.name), int(match[1])))
    except OSError:
        pass
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _pidfile(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def observe(host: HostLayout, supervisor: SupervisorClient) -> Facts:
    """The base's runtime now: supervisord, the managed nginx, and who holds what."""
    supervisord = _pidfile(host.supervisor_pidfile) if supervisor.is_running() else None
    nginx, nginx_state = None, ""
    if supervisord is not None and not host.system_nginx:
        info = supervisor.process("nginx")
        if info is not None:
            nginx_state = info.state
            if info.pid and alive(info.pid):
                nginx = info.pid
    confs = [_read(p) for p in sorted(host.nginx_sites.glob("*.conf"))]
    ports = set() if host.system_nginx else site_ports(confs)
    tcp = [entry for entry in sockdiag.tcp_listening() if entry[1] in ports]
    base = f"{host.base}/"
    unix = [e for e in unix_listeners(_read(Path("/proc/net/unix"))) if e[0].startswith(base)]
    holders = socket_holders({inode for *_, inode in tcp} | {inode for _, inode in unix})
    listeners_tcp = tuple(
        Listener(f"{addr}:{port}", inode, tuple(holders[inode])) for addr, port, inode in tcp
    )
    found_unix = [Listener(path, inode, tuple(holders[inode])) for path, inode in unix]
    units = {
        pid: cgroup_unit(_read(Path(f"/proc/{pid}/cgroup"))) for u in found_unix for pid in u.pids
    }
    listeners_unix = tuple(u for u in found_unix if not run_by_systemd(host.base, u, units))
    pidfile = None if host.system_nginx else _pidfile(host.nginx_pidfile)
    pids = {pid for held in holders.values() for pid, _ in held}
    pids |= {p for p in (supervisord, nginx, pidfile) if p}
    return Facts(
        base=host.base,
        supervisord=supervisord,
        nginx=nginx,
        nginx_state=nginx_state,
        ports=listeners_tcp,
        sockets=listeners_unix,
        nginx_pidfile=pidfile,
        procs=_with_ancestors(pids, host.base),
        system_nginx=host.system_nginx,
    )


def _with_ancestors(pids: set[int], base: Path) -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in procs or pid <= 1:
            continue
        proc = read_proc(pid)
        if proc is None or _is_zombie(pid):
            continue
        procs[pid] = replace(proc, of_base=_of_base(proc, base))
        todo.append(proc.ppid)
    return procs


def _of_base(proc: Proc, base: Path) -> bool:
    """The process is this base's: its command line names the base (an nginx master, its
    config), or it has a file under the base open (an nginx worker, its error log)."""
    if str(base) in proc.cmdline:
        return True
    prefix = f"{base}/"
    try:
        with os.scandir(f"/proc/{proc.pid}/fd") as fds:
            for fd in fds:
                with contextlib.suppress(OSError):
                    if os.readlink(fd.path).startswith(prefix):
                        return True
    except OSError:
        pass
    return False


def children(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except (OSError, ValueError):
        return set()


def port_inodes(host: HostLayout) -> set[int]:
    """The listening sockets on the ports of the base's nginx sites."""
    ports = site_ports(_read(p) for p in sorted(host.nginx_sites.glob("*.conf")))
    return {inode for _, port, inode in sockdiag.tcp_listening() if port in ports}


def _socket_inodes(pid: int) -> set[int]:
    return {inode for _, inode in sockets_of(pid)}


def holds_ports(pid: int, host: HostLayout) -> bool:
    """`pid` holds a listening socket on a port of the base's sites."""
    return bool(_socket_inodes(pid) & port_inodes(host))


def workers_hold_ports(master: int, host: HostLayout | None) -> bool:
    """nginx's `master` has workers, and they hold every listening socket of the `host`'s
    sites (None: any)."""
    workers = children(master)
    if not workers or host is None:
        return bool(workers)
    held = set().union(*(_socket_inodes(w) for w in workers))
    return port_inodes(host) <= held


def who_holds(port: int) -> str | None:
    """ "pid N (command line)" of each process listening on TCP `port`, None if none is."""
    inodes = {inode for _, listened, inode in sockdiag.tcp_listening() if listened == port}
    pids = sorted({pid for held in socket_holders(inodes).values() for pid, _ in held})
    procs = [p for p in (read_proc(pid) for pid in pids) if p is not None]
    return "; ".join(f"pid {p.pid} ({' '.join(p.cmdline.split())})" for p in procs) or None
