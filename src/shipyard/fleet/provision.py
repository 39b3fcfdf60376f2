"""Provisioning a host: decide from its facts what is missing (a plan), then do only that.

A provisioned host has nginx and python3-venv (from apt, only when missing), the app user, and
shipyard's runtime under its base directory: a venv with supervisord and shipyard's
dependencies, installed on this machine from wheels for the host's platform and sent as one
tar (build/runtime_image.py: hosts need no package index and install no wheel), plus
shipyard's own package. Where systemd runs, supervisord starts at boot.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import py_compile
import shlex
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from shipyard.build.deps import Pin
from shipyard.build.platforms import Platform
from shipyard.build.runtime_image import Image, runtime_image
from shipyard.build.wheels import fill_store
from shipyard.errors import HostError
from shipyard.fleet.remote import (
    INTERPRETER_MARK,
    LIB_MARK,
    RUNTIME_MARK,
    Facts,
    RemoteHost,
    lib_files,
    lib_id,
    runtime_id,
    runtime_pins,
)
from shipyard.host.local import LocalConnection
from shipyard.host.python import PythonInfo, find_python
from shipyard.host.steps import Command

APT_PACKAGES = {"nginx": "nginx", "venv": "python3-venv", "python": "python3"}


@dataclass(frozen=True)
class Action:
    """One provisioning step: what it is for, the command, and what it reads on stdin."""

    what: str
    command: Command
    data: Callable[[], bytes | Path] | None = None  # a Path: the file is sent as it is


def unit_name(host: RemoteHost) -> str:
    return "shipyard-" + hashlib.sha256(str(host.base).encode()).hexdigest()[:8] + ".service"


def plan(
    host: RemoteHost, facts: Facts, app_user: str, cache: Path, certbot: bool = False
) -> list[Action]:
    """The actions that bring this host to provisioned; empty when it already is.
    `certbot`: the host obtains ACME certificates (an lb whose target uses them)."""
    actions: list[Action] = []
    missing = [
        package
        for fact, package in APT_PACKAGES.items()
        if not (facts.nginx if fact == "nginx" else facts.venv if fact == "venv" else facts.python)
    ]
    if certbot and not facts.certbot:
        missing.append("certbot")
    if missing:
        if not facts.apt:
            raise HostError(
                host.name,
                f"is missing {', '.join(missing)} and has no apt-get ({facts.os}).",
                hint="Install them with the host's package manager, then provision again.",
            )
        # The Debian package starts the system nginx on port 80; shipyard runs its own.
        stop_system = (
            " && { systemctl disable --now nginx >/dev/null 2>&1 || true; }"
            if facts.systemd and "nginx" in missing
            else ""
        )
        script = (
            "export DEBIAN_FRONTEND=noninteractive && apt-get update -q && "
            f"apt-get install -y -q --no-install-recommends {' '.join(missing)}{stop_system}"
        )
        actions.append(Action(f"install {', '.join(missing)} (apt)", _sh(script, timeout=1800)))
    if app_user and not facts.app_user:
        actions.append(
            Action(
                f"create the app user {app_user}",
                # hosts sharing /etc/passwd may race: an existing user is the goal reached
                _sh(
                    f"id -u {app_user} >/dev/null 2>&1 || useradd --system --user-group "
                    f"--no-create-home --home-dir {shlex.quote(str(host.base))} "
                    f"--shell /usr/sbin/nologin {app_user} || id -u {app_user} >/dev/null"
                ),
            )
        )
    python_minor = facts.python_minor or _host_python_guess()
    if facts.runtime != runtime_id(python_minor, facts.python_path):
        actions.append(
            _runtime_action(
                host, python_minor, facts.python_path or "python3", facts.wheel_platform, cache
            )
        )
    if facts.lib != lib_id():
        actions.append(lib_action(host, cache))
    if facts.systemd:
        actions.append(_systemd_action(host))
    return actions


def _host_python_guess() -> str:
    return find_python("").minor


def _sh(script: str, timeout: float = 600) -> Command:
    return Command(("sh", "-c", script), sudo=True, timeout=timeout)


def _runtime_action(
    host: RemoteHost, python_minor: str, interpreter: str, platform: Platform, cache: Path
) -> Action:
    pins = list(runtime_pins())
    own = find_python("")
    python = own if own.minor == python_minor else PythonInfo(f"python{python_minor}", python_minor)
    runtime = host.runtime
    image = _runtime_image(cache, pins, python, platform)
    # The old venv is set aside, not changed in place: a runtime of other versions is made
    # anew. Processes running from it (supervisord) keep what they have loaded.
    script = f"""set -e
rt={shlex.quote(str(runtime))}
py={shlex.quote(interpreter)}
mkdir -p "$rt/incoming"
chmod 755 {shlex.quote(str(host.base))} "$rt"
tmp=$(mktemp -d "$rt/incoming/runtime.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" -c {shlex.quote(_RECEIVE)} "$tmp/runtime.tar" {image.sha256} "$rt/venv" "$tmp/old-venv"
tar -xf "$tmp/runtime.tar" -C "$rt" --no-same-owner venv
rm -rf "$rt/bin/uv" "$rt/cache/uv"  # what runtimes before this one needed
echo "$py" > "$rt/venv/{INTERPRETER_MARK}"
echo {runtime_id(python_minor, interpreter)} > "$rt/venv/{RUNTIME_MARK}"
"""
    return Action(
        f"install shipyard's runtime: supervisord and {len(pins)} packages "
        f"({image.size // 1024} KiB)",
        _sh(script, timeout=600),
        lambda: image.path,
    )


# Copies stdin to a file and fails unless what arrived has the expected sha256; then sets the
# old venv aside and makes a new one with the host's Python (one interpreter start for both).
_RECEIVE = """import hashlib, os, sys, venv
tar, expected, env, old = sys.argv[1:]
digest = hashlib.sha256()
with open(tar, "wb") as out:
    while chunk := sys.stdin.buffer.read(1 << 20):
        digest.update(chunk)
        out.write(chunk)
if digest.hexdigest() != expected:
    sys.exit("shipyard's runtime arrived damaged (sha256 mismatch): provision again")
if os.path.lexists(env):
    os.rename(env, old)
venv.EnvBuilder(symlinks=True, with_pip=False).create(env)
"""

_images: dict[tuple[object, ...], Image] = {}
# Hosts are provisioned in threads: each payload is made by one of them, the others wait.
_payloads_lock = threading.Lock()


def _runtime_image(
    cache: Path,
    pins: list[Pin],
    python: PythonInfo,
    platform: Platform,
) -> Image:
    """The runtime's packages installed: one tar per host kind, made once."""
    key = ("runtime", str(cache), tuple(map(str, pins)), python.minor, platform.key)
    with _payloads_lock:
        if key not in _images:
            wheels = fill_store(LocalConnection(), cache / "wheels", pins, python, platform)
            files = sorted(wheels.values(), key=lambda p: p.name)
            _images[key] = runtime_image(cache, files, python.minor)
        return _images[key]


def lib_action(host: RemoteHost, cache: Path) -> Action:
    """Sync shipyard's own package (the agent) to the host: swapped in whole."""
    runtime = shlex.quote(str(host.runtime))
    script = f"""set -e
rt={runtime}
mkdir -p "$rt"
rm -rf "$rt/lib.new" "$rt/lib.old"
mkdir "$rt/lib.new"
tar -xf - -C "$rt/lib.new" --no-same-owner
echo {lib_id()} > "$rt/lib.new/{LIB_MARK}"
chmod -R go-w "$rt/lib.new"
if [ -d "$rt/lib" ]; then mv "$rt/lib" "$rt/lib.old"; fi
mv "$rt/lib.new" "$rt/lib"
rm -rf "$rt/lib.old"
"""
    minor = host.facts.python_minor if host.facts is not None else ""
    return Action(
        f"sync shipyard {lib_id()} (the host agent)",
        _sh(script),
        lambda: lib_payload(cache, minor),
    )


def _systemd_action(host: RemoteHost) -> Action:
    runtime = host.runtime
    unit = f"""[Unit]
Description=shipyard runtime (supervisord, nginx, apps) under {host.base}
After=network-online.target
ConditionPathExists={runtime}/supervisord.conf

[Service]
ExecStart={runtime}/venv/bin/python -m supervisor.supervisord -n -c {runtime}/supervisord.conf
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""
    path = f"/etc/systemd/system/{unit_name(host)}"
    script = (
        f"if ! cmp -s {shlex.quote(path)} - ; then "
        f"printf '%s' {shlex.quote(unit)} > {shlex.quote(path)} && systemctl daemon-reload && "
        f"systemctl enable {unit_name(host)} >/dev/null 2>&1; echo changed; fi"
    )
    return Action(
        f"start supervisord at boot ({unit_name(host)})", _sh(script), lambda: unit.encode()
    )


def lib_payload(cache: Path, host_python_minor: str) -> Path:
    """shipyard's package as a tar, made once per version of it and kept in the cache; with
    its bytecode when this interpreter is the host's version, so that the host's first agent
    does not compile it (a third of a second). The .pyc files check their source's mtime and
    size, which tar keeps."""
    own = f"{sys.version_info.major}.{sys.version_info.minor}"
    with_bytecode = host_python_minor == own
    tag = sys.implementation.cache_tag if with_bytecode else "source"
    path = cache / "agent-payloads" / f"{lib_id()}-{tag}.tar"
    with _payloads_lock:
        if not path.is_file():
            files = list(lib_files())
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="shipyard-lib-", dir=path.parent) as tmp:
                if with_bytecode:
                    files += _compiled(files, Path(tmp))
                partial = Path(tmp) / "payload.tar"
                partial.write_bytes(_tar(files))
                os.replace(partial, path)
            # Those of earlier versions of shipyard go, once no provision can be reading them.
            for older in path.parent.glob(f"*-{tag}.tar"):
                if older != path and time.time() - older.stat().st_mtime > 86400:
                    older.unlink(missing_ok=True)
        return path


def _compiled(files: list[tuple[str, Path]], into: Path) -> list[tuple[str, Path]]:
    compiled = []
    for name, path in files:
        if not name.endswith(".py"):
            continue
        pyc = importlib.util.cache_from_source(name)
        py_compile.compile(str(path), cfile=str(into / pyc), dfile=name, doraise=True, optimize=0)
        compiled.append((pyc, into / pyc))
    return compiled


def _tar(files: Iterable[tuple[str, Path]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, path in files:
            info = tar.gettarinfo(str(path), arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(path, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def execute(host: RemoteHost, actions: list[Action]) -> list[str]:
    """Run the actions in order; return what was done, or raise with what the host printed."""
    done = []
    for action in actions:
        result = host.conn.run_input(action.command, action.data() if action.data else None)
        if not result.ok:
            raise HostError(
                host.name,
                f"provisioning failed at '{action.what}' (exit {result.exit_code}):\n"
                f"{result.output_tail(30)}",
                hint="Fix what it printed and run provision again: steps already done are "
                "not repeated.",
            )
        if action.what.startswith("start supervisord at boot") and "changed" not in result.stdout:
            continue
        done.append(action.what)
    return done
