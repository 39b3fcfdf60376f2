"""A typed client for supervisord's XML-RPC interface over its unix socket."""

from __future__ import annotations

import http.client
import time
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from supervisor.xmlrpc import SupervisorTransport

from shipyard.errors import HostError

# supervisor.xmlrpc.Faults values we act on
BAD_NAME = 10
NOT_RUNNING = 70
ALREADY_STARTED = 60
STILL_RUNNING = 91

# up: RUNNING, or STARTING (within its startsecs: it may already serve, as a release kept
# warm a moment after it served does)
UP_STATES = ("RUNNING", "STARTING")
FAILED_STATES = {"FATAL", "EXITED", "BACKOFF", "UNKNOWN"}


@dataclass(frozen=True)
class ProcessInfo:
    name: str
    group: str
    state: str
    pid: int
    description: str
    exitstatus: int

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> ProcessInfo:
        return cls(
            name=raw["name"],
            group=raw["group"],
            state=raw["statename"],
            pid=int(raw["pid"]),
            description=raw["description"],
            exitstatus=int(raw["exitstatus"]),
        )


class SupervisorClient(Protocol):
    """What host code asks of supervisord (Supervisor; a fake in unit tests)."""

    def close(self) -> None: ...

    def is_running(self) -> bool: ...

    def processes(self) -> list[ProcessInfo]: ...

    def process(self, name: str) -> ProcessInfo | None: ...

    def update(self) -> list[str]: ...

    def retire(self, group: str) -> None: ...

    def wait_stopped(self, name: str, timeout: float) -> None: ...

    def start(self, name: str, wait: bool = False) -> None: ...

    def stop(self, name: str, wait: bool = True) -> None: ...

    def signal(self, name: str, signal: str) -> None: ...


class Supervisor:
    """supervisord reached through its socket; every call is one XML-RPC round trip."""

    def __init__(self, socket: Path, host: str = "local") -> None:
        self.socket = socket
        self.host = host
        self._transport = SupervisorTransport(None, None, f"unix://{socket}")
        self._proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=self._transport)

    def close(self) -> None:
        self._transport.close()

    def __del__(self) -> None:
        # the transport keeps its unix socket open between calls
        self._transport.close()

    @property
    def _rpc(self) -> Any:
        return self._proxy.supervisor

    def is_running(self) -> bool:
        try:
            return bool(self._rpc.getState()["statename"] == "RUNNING")
        except (OSError, xmlrpc.client.Error, http.client.HTTPException):
            self._transport.close()  # a failed request leaves the cached connection unusable
            return False

    def processes(self) -> list[ProcessInfo]:
        return [ProcessInfo.parse(raw) for raw in self._call("getAllProcessInfo")]

    def process(self, name: str) -> ProcessInfo | None:
        try:
            return ProcessInfo.parse(self._call("getProcessInfo", f"{name}:{name}"))
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == BAD_NAME:
                return None
            raise

    def update(self) -> list[str]:
        """Apply config changes like `supervisorctl update`; return the groups added or changed.

        Added groups autostart; changed ones are stopped, removed and added again.
        """
        added, changed, removed = self._call("reloadConfig")[0]
        for group in removed:
            self._stop_group(group)
            self._remove_group(group)
        for group in changed:
            self._stop_group(group)
            self._remove_group(group)
            self._call("addProcessGroup", group)
        for group in added:
            self._call("addProcessGroup", group)
        return [*added, *changed]

    def retire(self, group: str) -> None:
        """Ask a group to stop gracefully without waiting; the next update() removes it."""
        try:
            self._call("stopProcessGroup", group, False)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (NOT_RUNNING, BAD_NAME):
                raise

    def wait_stopped(self, name: str, timeout: float) -> None:
        """Wait while a retired process is still finishing its requests (state STOPPING)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.process(name)
            if info is None or info.state not in ("STOPPING", "RUNNING", "STARTING", "BACKOFF"):
                return
            if info.state != "STOPPING":
                self.stop(name, wait=True)
                return
            time.sleep(0.02)

    def start(self, name: str, wait: bool = False) -> None:
        try:
            self._call("startProcess", f"{name}:{name}", wait)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode != ALREADY_STARTED:
                raise

    def stop(self, name: str, wait: bool = True) -> None:
        try:
            self._call("stopProcess", f"{name}:{name}", wait)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (NOT_RUNNING, BAD_NAME):
                raise

    def signal(self, name: str, signal: str) -> None:
        self._call("signalProcess", f"{name}:{name}", signal)

    def shutdown(self) -> None:
        self._call("shutdown")

    def _stop_group(self, group: str) -> None:
        try:
            self._call("stopProcessGroup", group, True)
        except xmlrpc.client.Fault as fault:
            if fault.faultCode not in (NOT_RUNNING, BAD_NAME):
                raise

    def _remove_group(self, group: str, timeout: float = 120) -> None:
        """Remove a stopped group. A retired one may still be finishing its requests
        (STOPPING: a stop asked of it again is refused as not running): wait for it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("removeProcessGroup", group)
                return
            except xmlrpc.client.Fault as fault:
                if fault.faultCode != STILL_RUNNING or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._rpc, method)(*args)
        except (OSError, http.client.HTTPException) as err:
            self._transport.close()
            raise HostError(
                self.host,
                f"cannot reach supervisord at {self.socket} "
                f"({getattr(err, 'strerror', None) or err}).",
                hint="Run 'shipyard status' to see the runtime, or deploy again to restart it.",
            ) from None
