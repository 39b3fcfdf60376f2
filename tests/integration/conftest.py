"""Shared by the end-to-end tests: a private base dir per test, a wheel cache per session.

Tests get these objects from the fixtures; they import the classes only for type hints
(under TYPE_CHECKING), so nothing depends on how pytest names this module.
"""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shipyard.cli.commands import main
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.runtime import stop_runtime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask-factory"


@dataclass
class Load:
    """A bounded stream of requests, a new connection each, counting failures."""

    port: int
    path: str = "/version"
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    bodies: set[str] = field(default_factory=set)
    releases: set[str | None] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        for _ in range(20000):
            if self._stop.is_set():
                return
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                conn.request("GET", self.path)
                response = conn.getresponse()
                body = response.read().decode()
                conn.close()
            except OSError as err:
                self.failed.append(repr(err))
                continue
            if response.status == 200:
                self.ok += 1
                self.bodies.add(body)
                self.releases.add(response.getheader("X-Shipyard-Release"))
            else:
                self.failed.append(f"HTTP {response.status}")

    def wait_for_more(self, count: int, timeout: float = 10) -> None:
        """Let at least `count` more requests succeed (or fail) before returning."""
        target = self.ok + len(self.failed) + count
        deadline = time.monotonic() + timeout
        while self.ok + len(self.failed) < target and time.monotonic() < deadline:
            time.sleep(0.01)


@dataclass
class Deployment:
    """One app project, deployed under its own base dir, nginx on its own port."""

    project: Path
    base: Path
    port: int

    def cli(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsys.readouterr()
        code = exit_info.value.code
        return (code if isinstance(code, int) else 1), out, err

    def get(self, path: str) -> tuple[int, str, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return (
                response.status,
                response.read().decode(),
                response.getheader("X-Shipyard-Release"),
            )
        finally:
            conn.close()

    def wait_for_status(self, path: str, status: int, timeout: float = 15) -> list[int]:
        """GET `path` until it answers `status`; return the other statuses seen before."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout
        while True:
            got = self.get(path)[0]
            if got == status:
                return seen
            seen.append(got)
            if time.monotonic() >= deadline:
                raise AssertionError(f"GET {path} did not answer {status} within {timeout} s")
            time.sleep(0.02)

    def set_greeting(self, text: str) -> None:
        views = self.project / "flaskr" / "views.py"
        views.write_text(
            re.sub(r'^GREETING = ".*"$', f'GREETING = "{text}"', views.read_text(), flags=re.M)
        )

    def app(self, name: str) -> AppLayout:
        return HostLayout(self.base).app(name)

    @contextmanager
    def under_load(self, path: str = "/version") -> Iterator[Load]:
        """Requests run in a thread for the duration of the block."""
        load = Load(self.port, path)
        thread = threading.Thread(target=load.run)
        thread.start()
        try:
            yield load
        finally:
            load._stop.set()
            thread.join()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SHIPYARD_CACHE per test run: wheels (uWSGI's is compiled) are built once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def bare_deployment(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    """A base dir and a port; the test writes the project into `project` itself."""
    port = _free_port()
    base = Path(tempfile.mkdtemp(prefix="sy", dir="/tmp"))  # short: unix socket paths
    monkeypatch.setenv("SHIPYARD_HOME", str(base))
    monkeypatch.setenv("SHIPYARD_CACHE", str(cache))
    try:
        yield Deployment(tmp_path / "app", base, port)
    finally:
        stop_runtime(HostLayout(base))
        shutil.rmtree(base, ignore_errors=True)


def _copy_example(deployment: Deployment) -> Deployment:
    project = deployment.project
    shutil.copytree(
        EXAMPLE, project, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__", "instance")
    )
    spec = project / "shipyard.toml"
    spec.write_text(f'listen = "127.0.0.1:{deployment.port}"\n' + spec.read_text())
    return deployment


@pytest.fixture
def deployment(bare_deployment: Deployment) -> Deployment:
    """A copy of the example app whose spec listens on a free port."""
    return _copy_example(bare_deployment)


@pytest.fixture(scope="module")
def module_deployment(
    cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    """As `deployment`, shared by a module's tests: cases that reuse one deployed app."""
    port = _free_port()
    base = Path(tempfile.mkdtemp(prefix="sy", dir="/tmp"))  # short: unix socket paths
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SHIPYARD_HOME", str(base))
        env.setenv("SHIPYARD_CACHE", str(cache))
        try:
            yield _copy_example(Deployment(tmp_path_factory.mktemp("app") / "app", base, port))
        finally:
            stop_runtime(HostLayout(base))
            shutil.rmtree(base, ignore_errors=True)
