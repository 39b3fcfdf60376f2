"""SSH targets without servers: addresses, target specs, facts, quoting, the wire, lb config."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from shipyard.errors import SpecError
from shipyard.fleet.provision import lib_payload, plan, unit_name
from shipyard.fleet.remote import (
    FACTS_SCRIPT,
    Facts,
    RemoteHost,
    host_base,
    lib_id,
    runtime_id,
    runtime_pins,
)
from shipyard.fleet.ssh import SSHConnection, SSHOptions, unreachable
from shipyard.host import render, wire
from shipyard.host.protocol import FileHeader
from shipyard.host.steps import Command
from shipyard.spec.address import SSHAddress
from shipyard.spec.model import Spec, TargetSpec, parse_spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1.example", SSHAddress("web1.example")),
        ("deploy@web3.example:2222", SSHAddress("web3.example", "deploy", 2222)),
        ("root@10.0.0.5", SSHAddress("10.0.0.5", "root")),
        ("[fd00::5]:22", SSHAddress("fd00::5", None, 22)),
    ],
)
def test_ssh_addresses_parse_and_print_back(text: str, expected: SSHAddress) -> None:
    assert SSHAddress.parse(text) == expected
    assert str(SSHAddress.parse(text)) == text


@pytest.mark.parametrize("text", ["", "a b", "web:0", "web:99999", "@web", "u@"])
def test_bad_ssh_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an SSH address"):
        SSHAddress.parse(text)


def _spec(targets: dict[str, Any], example_spec_dict: dict[str, object]) -> Spec:
    return parse_spec({**example_spec_dict, "targets": targets}, Path("shipyard.toml"))


def test_hosts_make_an_ssh_target_with_defaults(example_spec_dict: dict[str, object]) -> None:
    spec = _spec({"prod": {"hosts": ["web1", "deploy@web2:2222"], "lb": "lb1"}}, example_spec_dict)
    prod = spec.target("prod")
    assert prod.type == "ssh" and prod.strategy == "all-at-once" and prod.batch == 1
    assert not prod.trust_new_host_keys  # strict host keys unless asked
    assert host_base(prod, "web1") == PurePosixPath("/srv/shipyard")
    spread = TargetSpec(hosts=["web1"], base_dir="/data/{host}")
    assert host_base(spread, "deploy@web1:22") == PurePosixPath("/data/web1")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"type": "ssh"}, "needs `hosts`"),
        ({"hosts": ["web1", "web1"]}, "lists a host twice"),
        ({"hosts": ["web1"], "lb": "web1"}, "both the lb and a web host"),
        ({"hosts": ["web 1"]}, "not an SSH address"),
        ({"hosts": ["web1"], "base_dir": "srv"}, "absolute path"),
        ({"hosts": ["web1"], "strategy": "yolo"}, "strategy"),
        ({"hosts": ["web1"], "batch": 0}, "batch"),
        ({"hosts": ["web1"], "listen": "80"}, "host:port"),
        ({"type": "local", "hosts": ["web1"]}, "local target has no `hosts`"),
        ({"hosts": ["web1"], "sudo_password": "x"}, "sudo_password"),
    ],
)
def test_bad_targets_say_what_and_where(
    target: dict[str, Any], message: str, example_spec_dict: dict[str, object]
) -> None:
    with pytest.raises(SpecError) as raised:
        _spec({"prod": target}, example_spec_dict)
    assert "targets.prod" in str(raised.value)
    assert message in str(raised.value)


def test_facts_parse_the_probe_output() -> None:
    facts = Facts.parse(
        "os=debian 12\npython=3.11.2 linux-x86_64\npython_path=/usr/bin/python3\nvenv=yes\n"
        "nginx=/usr/sbin/nginx\n"
        "login=root\napp_user=\nsystemd=yes\napt=/usr/bin/apt-get\nruntime=abc\nlib=\n"
        "disk_free_kb=1234\n"
    )
    assert facts.python_minor == "3.11" and facts.platform == "linux-x86_64"
    assert facts.python_path == "/usr/bin/python3"
    assert facts.venv and facts.systemd and facts.apt and not facts.app_user
    assert (facts.nginx, facts.runtime, facts.lib, facts.disk_free_kb) == (
        "/usr/sbin/nginx",
        "abc",
        "",
        1234,
    )
    bare = Facts.parse("os=alpine 3\npython=\n")
    assert not bare.python and not bare.nginx and not bare.apt


def test_the_facts_probe_reads_this_machine(tmp_path: Path) -> None:
    probed = subprocess.run(
        ["sh", "-s", "--", str(tmp_path / "base"), "root"],
        input=FACTS_SCRIPT,
        capture_output=True,
        text=True,
        check=True,
    )
    facts = Facts.parse(probed.stdout)
    python = shutil.which("python3", path="/usr/bin") or shutil.which("python3")
    assert python is not None and facts.python_path == python
    expected = subprocess.run(
        [python, "-c", "import sys, sysconfig, os, importlib.util as u;"
         "print('%d.%d.%d' % sys.version_info[:3], sysconfig.get_platform());"
         "print(os.confstr('CS_GNU_LIBC_VERSION'));"
         "print(bool(u.find_spec('venv') and u.find_spec('ensurepip')))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()  # fmt: skip
    assert f"{facts.python} {facts.platform}" == expected[0]
    assert facts.libc == expected[1] and facts.libc.startswith("glibc ")
    assert str(facts.venv) == expected[2]
    assert facts.login == pwd.getpwuid(os.getuid()).pw_name
    assert facts.app_user  # the user asked about, root, exists everywhere
    assert facts.runtime == facts.lib == "" and facts.disk_free_kb > 0


def _conn(user: str | None = None, **options: Any) -> SSHConnection:
    return SSHConnection(SSHAddress("web1", user, 2222), SSHOptions(**options), Path("/tmp/x"))


def test_ssh_argv_checks_host_keys_strictly_and_multiplexes() -> None:
    argv = _conn("deploy", config_file=Path("/etc/fleet.conf")).ssh_argv()
    assert argv[:3] == ["ssh", "-F", "/etc/fleet.conf"]
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert "ControlMaster=auto" in argv and "ControlPath=/tmp/x/%C" in argv
    assert argv[-3:] == ["deploy", "-T", "web1"] and "2222" in argv
    tofu = _conn(trust_new_host_keys=True).ssh_argv()
    assert "StrictHostKeyChecking=accept-new" in tofu


def test_remote_commands_are_quoted_and_sudo_wrapped() -> None:
    conn = _conn("deploy")
    conn._config = {"user": "deploy"}  # what `ssh -G` would report
    command = Command(("echo", "a b", "$HOME"), cwd="/srv/x y", env={"K": "v w"}, sudo=True)
    text = conn.remote_command(command)
    assert text.startswith("cd '/srv/x y' && sudo -n -- sh -c ")
    inner = shlex.split(text.split(" && ", 1)[1])[-1]
    assert shlex.split(inner) == ["env", "K=v w", "echo", "a b", "$HOME"]
    conn._config = {"user": "root"}
    assert "sudo" not in conn.remote_command(command)


def test_ssh_failures_explain_host_key_changes_and_unreachable_hosts() -> None:
    changed = unreachable("web2", "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n")
    assert changed.message.startswith("web2: cannot reach") and "known_hosts" in str(changed.hint)
    down = unreachable("web3", "ssh: connect to host 10.0.0.3 port 22: Connection refused")
    assert "Connection refused" in down.message and "re-run" in str(down.hint)


def test_wire_round_trip_checks_every_file(tmp_path: Path) -> None:
    source = tmp_path / "a.whl"
    source.write_bytes(b"wheel bytes" * 1000)
    entry = wire.file_entry("wheels/a.whl", source)
    stream = io.BytesIO()
    wire.send(stream, {"op": "receive"}, [entry])
    stream.seek(0)
    message = wire.receive(stream)
    assert message is not None and message["op"] == "receive"
    listed = [FileHeader.model_validate(f) for f in message["files"]]
    written = wire.receive_files(stream, listed, tmp_path / "in")
    assert written[0].read_bytes() == source.read_bytes()
    assert wire.receive(stream) is None  # the payload was consumed exactly


def test_wire_refuses_corrupt_files_and_paths_outside(tmp_path: Path) -> None:
    source = tmp_path / "a.whl"
    source.write_bytes(b"x" * 10)
    entry = wire.FileEntry("wheels/a.whl", 10, "0" * 64, source)
    after = wire.FileEntry("wheels/b.whl", 10, wire.sha256_of(source), source)
    stream = io.BytesIO()
    wire.send(stream, {"op": "receive"}, [entry, after])
    wire.send(stream, {"op": "next"})
    stream.seek(0)
    message = wire.receive(stream)
    assert message is not None
    with pytest.raises(wire.ProtocolError, match=r"corrupted in transit.*a\.whl"):
        wire.receive_files(stream, [entry, after], tmp_path / "in")
    assert wire.receive(stream) == {"op": "next"}  # still in step after the bad file
    for bad in ("../etc/passwd", "/etc/passwd", ""):
        with pytest.raises(wire.ProtocolError, match="refusing"):
            wire.safe_relative(bad)


def test_lb_config_lists_backends_and_drains(example_spec_dict: dict[str, object]) -> None:
    spec = parse_spec(example_spec_dict, Path("shipyard.toml"))
    conf = render.lb_conf(
        spec,
        "abc123",
        [("10.0.0.2:80", False), ("10.0.0.3:80", True)],
        {"/static": Path("/srv/edge/abc123/0-static")},
        "0.0.0.0:80",
        Path("/srv/a.log"),
        Path("/srv/e.log"),
    )
    assert "server 10.0.0.2:80 max_fails=2 fail_timeout=5s;" in conf
    assert "server 10.0.0.3:80 max_fails=2 fail_timeout=5s down;" in conf
    assert "keepalive 32;" in conf and "proxy_next_upstream error timeout" in conf
    assert "location /static/ {\n        alias /srv/edge/abc123/0-static/;" in conf


def _host() -> RemoteHost:
    conn = _conn()
    conn._config = {"user": "root"}
    return RemoteHost("web1", "web", conn, PurePosixPath("/srv/shipyard"), "0.0.0.0:80")


def _facts(**changes: Any) -> Facts:
    ready = {
        "os": "debian 12",
        "python": "3.11.2",
        "platform": "linux-x86_64",
        "python_path": "/usr/bin/python3",
        "venv": True,
        "nginx": "/usr/sbin/nginx",
        "login": "root",
        "app_user": True,
        "systemd": False,
        "apt": True,
        "runtime": runtime_id("3.11", "/usr/bin/python3"),
        "lib": lib_id(),
        "disk_free_kb": 10**7,
    }
    return Facts(**{**ready, **changes})


def test_a_provisioned_host_needs_nothing(tmp_path: Path) -> None:
    assert plan(_host(), _facts(), "shipyard", tmp_path) == []


def test_provision_installs_only_what_is_missing(tmp_path: Path) -> None:
    actions = plan(_host(), _facts(nginx="", app_user=False, lib="old"), "shipyard", tmp_path)
    whats = [action.what for action in actions]
    assert whats[0] == "install nginx (apt)" and "python3-venv" not in whats[0]
    assert whats[1] == "create the app user shipyard"
    assert whats[2].startswith("sync shipyard ")
    assert len(whats) == 3
    assert all(action.command.sudo for action in actions)


def test_an_lb_that_obtains_acme_certificates_gets_certbot(tmp_path: Path) -> None:
    (action,) = plan(_host(), _facts(), "shipyard", tmp_path, certbot=True)
    assert action.what == "install certbot (apt)"
    assert "apt-get install -y -q --no-install-recommends certbot" in " ".join(action.command.argv)
    assert plan(_host(), _facts(certbot="/usr/bin/certbot"), "shipyard", tmp_path, True) == []
    assert Facts.parse("certbot=/usr/bin/certbot\n").certbot == "/usr/bin/certbot"


def test_the_agent_payload_is_made_once_and_runs_from_its_bytecode(tmp_path: Path) -> None:
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    payload = lib_payload(tmp_path / "cache", own)
    assert payload.name == f"{lib_id()}-{sys.implementation.cache_tag}.tar"
    made = payload.stat().st_mtime_ns
    assert lib_payload(tmp_path / "cache", own) == payload
    assert payload.stat().st_mtime_ns == made  # kept, not made again
    assert lib_payload(tmp_path / "cache", "2.7").name == f"{lib_id()}-source.tar"
    with tarfile.open(payload) as tar:
        tar.extractall(tmp_path / "lib")
    pyc = tmp_path / "lib/shipyard/host/__pycache__" / f"agent.{sys.implementation.cache_tag}.pyc"
    source = (tmp_path / "lib/shipyard/host/agent.py").stat()
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER
    # valid for the unpacked source (its mtime and size), so the host compiles nothing
    assert int.from_bytes(header[8:12], "little") == int(source.st_mtime)
    assert int.from_bytes(header[12:16], "little") == source.st_size
    done = subprocess.run(
        [
            sys.executable,
            "-B",
            "-c",
            "import shipyard.host.agent; print(shipyard.host.agent.__file__)",
        ],
        env={**os.environ, "PYTHONPATH": str(tmp_path / "lib")},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == str(tmp_path / "lib/shipyard/host/agent.py")


def test_provision_without_apt_says_what_to_install(tmp_path: Path) -> None:
    from shipyard.errors import HostError

    with pytest.raises(HostError, match=r"missing nginx, python3-venv and has no apt-get"):
        plan(_host(), _facts(nginx="", venv=False, apt=False), "shipyard", tmp_path)


def test_runtime_pins_close_over_shipyards_dependencies() -> None:
    names = {pin.name for pin in runtime_pins()}
    assert {"supervisor", "pydantic", "pydantic-core", "jinja2", "markupsafe", "installer"} <= names
    # the CLI's and the builder's stay here; hosts install with installer, not uv
    assert not names & {"shipyard", "pytest", "uv", "rich", "click", "build"}


def test_provision_makes_supervisord_start_at_boot_with_a_unit_systemd_accepts(
    tmp_path: Path,
) -> None:
    """Hosts in tests have no systemd running; systemd's own verifier checks the unit."""
    host = _host()
    host.base = PurePosixPath(tmp_path)
    actions = plan(host, _facts(systemd=True), "shipyard", tmp_path)
    boot = [action for action in actions if action.what.startswith("start supervisord at boot")]
    assert len(boot) == 1 and boot[0].command.sudo and boot[0].data is not None
    data = boot[0].data()
    assert isinstance(data, bytes)
    unit = data.decode()
    assert f"-c {tmp_path}/.shipyard/supervisord.conf" in unit and " -n " in unit
    (tmp_path / ".shipyard" / "venv" / "bin").mkdir(parents=True)
    (tmp_path / ".shipyard" / "venv" / "bin" / "python").symlink_to(sys.executable)
    (tmp_path / ".shipyard" / "supervisord.conf").write_text("[supervisord]\n")
    path = tmp_path / unit_name(host)
    path.write_text(unit)
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert str(path.name) not in verified.stderr, verified.stderr  # no warning about the unit


def test_the_runtime_is_checked_before_the_old_venv_is_set_aside(tmp_path: Path) -> None:
    from shipyard.fleet.provision import _RECEIVE

    env, old = tmp_path / "venv", tmp_path / "old-venv"
    env.mkdir()
    (env / "marker").write_text("the serving runtime")
    data = b"a tar, say" * 1000

    def receive(sha: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-c", _RECEIVE, str(tmp_path / "rt.tar"), sha, str(env), str(old)]
        return subprocess.run(argv, input=data.decode(), capture_output=True, text=True)

    damaged = receive(hashlib.sha256(b"something else").hexdigest())
    assert damaged.returncode != 0 and "arrived damaged" in damaged.stderr
    assert (env / "marker").read_text() == "the serving runtime" and not old.exists()
    arrived = receive(hashlib.sha256(data).hexdigest())
    assert arrived.returncode == 0, arrived.stderr
    assert (tmp_path / "rt.tar").read_bytes() == data
    assert (old / "marker").is_file() and (env / "pyvenv.cfg").is_file()
    assert (env / "bin" / "python").is_symlink() and not (env / "bin" / "pip").exists()
