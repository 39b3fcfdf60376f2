"""The test hosts themselves: every property deploy tests rely on, checked against real sshd."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
from netns import Fleet, FleetFactory

pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    """No such process, or a zombie (the init of some sandboxes reaps orphans late)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _http_get(url: str, *, within: float = 10) -> str:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_each_host_runs_commands_in_its_own_namespace(fleet: Fleet) -> None:
    assert sorted(fleet.hosts) == ["lb1", "web1", "web2", "web3"]
    assert len({host.address for host in fleet}) == 4
    for host in fleet:
        proc = fleet.ssh(host, "hostname -I; readlink /proc/self/ns/net")
        assert proc.returncode == 0, proc.stderr
        addresses, netns = proc.stdout.rsplit("\n", 2)[:2]
        assert addresses.split() == [host.address]
        # Same namespace as `ip netns exec` gives, so the command really ran on that host.
        assert netns == host.exec(["readlink", "/proc/self/ns/net"]).stdout.strip()


def test_hosts_are_reachable_by_address_too(fleet: Fleet) -> None:
    web1 = fleet["web1"]
    proc = fleet.ssh(web1.address, "hostname -I")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [web1.address]


def test_lb_reaches_the_web_hosts_sshd(fleet: Fleet) -> None:
    assert fleet.lb is not None
    script = (
        "import socket, sys\n"
        "for address in sys.argv[1:]:\n"
        "    with socket.create_connection((address, 22), timeout=3) as conn:\n"
        "        print(address, conn.recv(64).decode().strip())\n"
    )
    addresses = [host.address for host in fleet.web]
    command = shlex.join(["python3", "-c", script, *addresses])
    proc = fleet.ssh(fleet.lb, command)
    assert proc.returncode == 0, proc.stderr
    banners = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert sorted(banners) == sorted(addresses)
    assert all(banner.startswith("SSH-2.0-OpenSSH") for banner in banners.values())


def test_control_master_connections(fleet: Fleet) -> None:
    control = Path(tempfile.mkdtemp(prefix="sycm", dir="/tmp"))  # socket paths are short
    options = ["-o", "ControlMaster=auto", "-o", f"ControlPath={control}/%C"]
    options += ["-o", "ControlPersist=60"]
    ssh = ["ssh", "-F", str(fleet.ssh_config), *options]
    try:
        # capture_output as shipyard does: the persisting master must not hold our pipes open.
        first = subprocess.run(
            [*ssh, "web2", "echo one"], capture_output=True, text=True, timeout=15
        )
        assert (first.returncode, first.stdout) == (0, "one\n"), first.stderr
        check = subprocess.run(
            [*ssh, "-O", "check", "web2"], capture_output=True, text=True, timeout=5
        )
        assert check.returncode == 0 and "Master running" in check.stderr
        second = subprocess.run(
            [*ssh, "web2", "hostname -I"], capture_output=True, text=True, timeout=15
        )
        assert second.stdout.split() == [fleet["web2"].address], second.stderr
    finally:
        subprocess.run([*ssh, "-O", "exit", "web2"], capture_output=True, timeout=10, check=False)
        shutil.rmtree(control, ignore_errors=True)


def test_detached_server_is_reachable_and_cleanup_kills_everything(
    make_fleet: FleetFactory,
) -> None:
    fleet = make_fleet(web=1, lb=False)
    host = fleet["web1"]
    (host.base_dir / "index.html").write_text("served from web1\n")
    # ssh returns once nothing holds the session's stdout/stderr: the server's own fds are
    # redirected, and the braces keep `&` off the whole `cd && ...` list, whose background
    # subshell would otherwise keep the session's pipes open for as long as the server runs.
    command = (
        f"cd {shlex.quote(str(host.base_dir))} && {{ setsid nohup python3 -m http.server "
        f"--bind {host.address} 8000 >/dev/null 2>&1 </dev/null & }}"
    )
    started = time.monotonic()
    proc = fleet.ssh(host, command, timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 5
    assert _http_get(f"http://{host.address}:8000/index.html") == "served from web1\n"
    servers = [
        pid for pid in host.pids() if b"http.server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(servers) == 1
    sshd = host.sshd_pid
    assert sshd is not None

    fleet.close()
    fleet.close()  # idempotent

    assert _gone(servers[0]) and _gone(sshd)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert f"{fleet.prefix}-" not in listed.stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    assert f" {fleet.prefix}@" not in links.stdout and f" {fleet.prefix}:" not in links.stdout
    assert not fleet.root.exists()


def test_replaced_host_key_is_refused(make_fleet: FleetFactory) -> None:
    fleet = make_fleet(web=1, lb=False)
    host = fleet["web1"]
    assert fleet.ssh(host, "true").returncode == 0
    old_key = host.public_host_key
    old_sshd = host.sshd_pid

    host.replace_host_key()

    assert host.public_host_key != old_key and host.sshd_pid != old_sshd
    proc = fleet.ssh(host, "touch /tmp/must-not-run")
    assert proc.returncode == 255
    assert (
        "REMOTE HOST IDENTIFICATION HAS CHANGED" in proc.stderr
        or "Host key verification failed" in proc.stderr
    ), proc.stderr
    fleet.write_known_hosts()  # trusting the new key makes the host usable again
    assert fleet.ssh(host, "true").returncode == 0


def test_stopped_sshd_refuses_and_cuts_sessions_then_starts_again(
    make_fleet: FleetFactory,
) -> None:
    fleet = make_fleet(web=1, lb=False)
    host = fleet["web1"]
    session = subprocess.Popen(
        fleet.ssh_argv(host, "echo up; sleep 60"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert session.stdout is not None and session.stdout.readline() == b"up\n"
        host.stop_sshd()
        assert session.wait(timeout=5) == 255  # the host "died" under the open session
    finally:
        session.kill()
        session.communicate()
    proc = fleet.ssh(host, "true")
    assert proc.returncode == 255 and "Connection refused" in proc.stderr, proc.stderr

    host.start_sshd()

    proc = fleet.ssh(host, "hostname -I")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [host.address]
