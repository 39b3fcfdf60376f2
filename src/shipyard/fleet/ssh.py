"""A remote host as a Connection: the OpenSSH client, one multiplexed master per host.

OpenSSH itself is the transport so that everything users already rely on keeps working:
~/.ssh/config (or a target's own file), the agent, keys, known_hosts, ProxyJump. Host keys are
checked strictly unless the target asks for trust-on-first-use.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from shipyard.errors import HostError
from shipyard.host.steps import Command, Result, Symlink, Upload
from shipyard.spec.address import SSHAddress

SSH_FAILED = 255  # ssh's own exit code for "could not connect or authenticate"


@dataclass(frozen=True)
class SSHOptions:
    """What a target may set about how its hosts are reached."""

    config_file: Path | None = None
    identity_file: Path | None = None
    trust_new_host_keys: bool = False
    connect_timeout: int = 10


class SSHConnection:
    """Runs commands on one host through a ControlMaster connection kept for this process."""

    def __init__(self, address: SSHAddress, options: SSHOptions, control_dir: Path) -> None:
        self.address = address
        self.options = options
        self.host = str(address)
        self._control_dir = control_dir
        self._config: dict[str, str] | None = None

    # --- how ssh is called -------------------------------------------------------------

    def ssh_argv(self, *, tty: bool = False) -> list[str]:
        argv = ["ssh"]
        if self.options.config_file:
            argv += ["-F", str(self.options.config_file)]
        checking = "accept-new" if self.options.trust_new_host_keys else "yes"
        argv += [
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self._control_dir}/%C",
            "-o", "ControlPersist=120",
            "-o", "BatchMode=yes",
            "-o", f"StrictHostKeyChecking={checking}",
            "-o", f"ConnectTimeout={self.options.connect_timeout}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
        ]  # fmt: skip
        if self.options.identity_file:
            argv += ["-i", str(self.options.identity_file)]
        if self.address.port:
            argv += ["-p", str(self.address.port)]
        if self.address.user:
            argv += ["-l", self.address.user]
        argv.append("-t" if tty else "-T")
        return [*argv, self.address.host]

    def effective_config(self) -> dict[str, str]:
        """ssh's settings for this host after ~/.ssh/config or the target's file, as
        `ssh -G` prints them (lower-case keys), asked once."""
        if self._config is None:
            argv = self.ssh_argv()
            proc = subprocess.run(
                [argv[0], "-G", *argv[1:]], capture_output=True, text=True, check=False
            )
            self._config = {}
            for line in proc.stdout.splitlines():
                key, _, value = line.partition(" ")
                self._config.setdefault(key.lower(), value.strip())
        return self._config

    @property
    def login_user(self) -> str:
        """The user ssh logs in as."""
        return self.effective_config().get("user", "root")

    @property
    def needs_sudo(self) -> bool:
        return self.login_user != "root"

    def remote_command(self, command: Command) -> str:
        """The shell text sshd runs: cd, env and sudo applied around the quoted argv."""
        parts = []
        if command.env:
            parts.append("env " + " ".join(shlex.quote(f"{k}={v}") for k, v in command.env.items()))
        parts.append(shlex.join(command.argv))
        text = " ".join(parts)
        if command.sudo and self.needs_sudo:
            text = f"sudo -n -- sh -c {shlex.quote(text)}"
        if command.cwd:
            text = f"cd {shlex.quote(command.cwd)} && {text}"
        return text

    # --- the Connection protocol ---------------------------------------------------------

    def run(self, command: Command) -> Result:
        return self.run_input(command, None)

    def run_input(self, command: Command, data: bytes | Path | None) -> Result:
        """Run `command` with `data` on its stdin. A Path is given to ssh as its stdin, so that
        a large file is not copied through this process (in pipe-sized writes)."""
        started = time.monotonic()
        argv = [*self.ssh_argv(), "--", self.remote_command(command)]
        try:
            with contextlib.ExitStack() as stack:
                stdin: int | IO[bytes] = subprocess.DEVNULL
                if isinstance(data, Path):
                    stdin = stack.enter_context(open(data, "rb"))
                proc = subprocess.run(
                    argv,
                    input=data if isinstance(data, bytes) else None,
                    stdin=None if isinstance(data, bytes) else stdin,
                    capture_output=True,
                    timeout=command.timeout,
                    check=False,
                )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        except subprocess.TimeoutExpired as exc:
            code, out = 124, exc.stdout or b""
            err = (exc.stderr or b"") + f"\ntimed out after {command.timeout} s".encode()
        result = Result(
            self.host,
            command,
            code,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
            time.monotonic() - started,
        )
        if code == SSH_FAILED:
            raise unreachable(self.host, result.stderr)
        return result

    def put(self, upload: Upload) -> None:
        dest = str(upload.dest)
        tmp = f"{dest}.shipyard-tmp"
        quoted = shlex.quote(tmp)
        chown = f"chown {shlex.quote(upload.owner)}: {quoted} && " if upload.owner else ""
        script = (
            f"mkdir -p {shlex.quote(str(upload.dest.parent))} && "
            f"(umask 077 && cat > {quoted}) && chmod {upload.mode:o} {quoted} && {chown}"
            f"mv -f {quoted} {shlex.quote(dest)}"
        )
        self._checked(Command(("sh", "-c", script), sudo=True), upload.content, f"write {dest}")

    def link(self, symlink: Symlink) -> None:
        link = str(symlink.link)
        tmp = f"{link}.shipyard-tmp"
        script = (
            f"ln -sfn {shlex.quote(symlink.target)} {shlex.quote(tmp)} && "
            f"mv -T {shlex.quote(tmp)} {shlex.quote(link)}"
        )
        self._checked(Command(("sh", "-c", script), sudo=True), None, f"link {link}")

    def read(self, path: PurePosixPath) -> bytes | None:
        quoted = shlex.quote(str(path))
        script = f"if [ -e {quoted} ]; then cat {quoted}; else exit 3; fi"
        argv = [
            *self.ssh_argv(),
            "--",
            self.remote_command(Command(("sh", "-c", script), sudo=True)),
        ]
        proc = subprocess.run(argv, capture_output=True, stdin=subprocess.DEVNULL, check=False)
        if proc.returncode == 3:
            return None
        if proc.returncode == SSH_FAILED:
            raise unreachable(self.host, proc.stderr.decode(errors="replace"))
        if proc.returncode != 0:
            raise HostError(
                self.host, f"cannot read {path}: {proc.stderr.decode(errors='replace').strip()}"
            )
        return proc.stdout

    def popen(self, command: Command, *, tty: bool = False) -> subprocess.Popen[bytes]:
        """A long-lived remote process with pipes: agent sessions and followed logs."""
        argv = [*self.ssh_argv(tty=tty), "--", self.remote_command(command)]
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def exec_argv(self, command: Command) -> list[str]:
        """argv that runs `command` on the host with the user's terminal (for `shipyard run`)."""
        return [*self.ssh_argv(tty=True), "--", self.remote_command(command)]

    def close(self) -> None:
        argv = self.ssh_argv()
        subprocess.run(
            [argv[0], "-O", "exit", *argv[1:]],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=False,
            timeout=10,
        )

    def _checked(self, command: Command, data: bytes | None, what: str) -> None:
        result = self.run_input(command, data)
        if not result.ok:
            raise HostError(self.host, f"cannot {what}:\n{result.output_tail()}")

    def remove(self, path: PurePosixPath) -> None:
        command = Command(("rm", "-f", "--", str(path)), sudo=True)
        self._checked(command, None, f"remove {path}")

    def make_dirs(self, paths: Sequence[PurePosixPath]) -> None:
        command = Command(("mkdir", "-p", "--", *map(str, paths)), sudo=True)
        self._checked(command, None, "make directories " + " ".join(map(str, paths)))


def unreachable(host: str, stderr: str) -> HostError:
    """ssh's own failure (exit 255), explained by what it printed."""
    detail = (
        "\n".join(f"  | {line}" for line in stderr.strip().splitlines()[-8:] if line.strip())
        or "  | (ssh printed nothing)"
    )
    if "IDENTIFICATION HAS CHANGED" in stderr or "Host key verification failed" in stderr:
        hint = (
            "The host's key is not the one in known_hosts (or is unknown). If the host was "
            "rebuilt, check its new key out of band and update known_hosts (ssh-keygen -R "
            "HOST); to accept an unknown key on first use, set trust_new_host_keys = true on "
            "the target. Nothing was changed on this host."
        )
    elif "Permission denied" in stderr:
        hint = "Check the user, the key (identity_file, ssh-agent) and authorized_keys."
    else:
        hint = (
            "Check that the host is up and sshd answers (ssh HOST true). Nothing was switched "
            "on this host; re-run the command once it is reachable."
        )
    return HostError(host, f"cannot reach the host over SSH:\n{detail}", hint=hint)


class ControlDir:
    """Where ControlMaster sockets live. One per user, reused across commands, so a deploy
    right after a status or a provision finds its connections open (ControlPersist); a
    private temporary one when the shared one is not safely ours."""

    def __init__(self) -> None:
        shared = Path(tempfile.gettempdir()) / f"shipyard-ssh-{os.getuid()}"
        try:
            shared.mkdir(mode=0o700, exist_ok=True)
            info = shared.lstat()
            if (
                stat.S_ISDIR(info.st_mode)
                and info.st_uid == os.getuid()
                and not (info.st_mode & 0o077)
            ):
                self.path, self.private = shared, False
                return
        except OSError:
            pass
        self.path, self.private = Path(tempfile.mkdtemp(prefix="sy-ssh-")), True

    def cleanup(self) -> None:
        if self.private:
            shutil.rmtree(self.path, ignore_errors=True)
