"""HTTPS with ACME against a real ACME server (pebble): the certificate is obtained through
shipyard's nginx answering HTTP-01 from its webroot, served, and verified against pebble's
own root; a forced renewal serves a new certificate with no failed request meanwhile."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pebblekit import free_port, pebble
from shipyard.host.layout import HostLayout
from shipyard.host.supervisor import Supervisor
from tlskit import https_get, served_certificate

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

HOST = "acme.shipyard.test"


class HttpsLoad:
    """Verified HTTPS requests in a loop, a new connection each (each one a handshake
    with whatever certificate nginx serves at that moment), until stopped."""

    def __init__(self, port: int, ca: Path) -> None:
        self.port, self.ca = port, ca
        self.ok = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        for _ in range(20000):
            if self._stop.is_set():
                return
            try:
                status, _, _ = https_get(self.port, HOST, "/version", self.ca)
            except OSError as err:
                self.failed.append(repr(err))
                continue
            if status == 200:
                self.ok += 1
            else:
                self.failed.append(f"HTTP {status}")

    def wait_for(self, count: int, timeout: float = 20) -> None:
        """Let `count` more requests succeed (or one fail)."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target and not self.failed and time.monotonic() < deadline:
            time.sleep(0.02)

    def __enter__(self) -> HttpsLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def test_acme_certificate_obtained_through_nginx_served_and_renewed_without_a_failure(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    https_port = free_port()
    with pebble(tmp_path, deployment.port) as acme:
        spec = deployment.project / "shipyard.toml"
        spec.write_text(
            spec.read_text().replace('name = "flaskr"', f'name = "flaskr"\ndomains = ["{HOST}"]', 1)
            + f'''
[tls]
mode = "acme"
email = "ops@shipyard.example"
directory = "{acme.directory}"
ca_bundle = "{acme.api_ca}"
listen = "127.0.0.1:{https_port}"
'''
        )
        code, out, err = deployment.cli("deploy", str(deployment.project), capsys=capsys)
        assert code == 0, out + err
        root = acme.issuing_root(tmp_path)

        status, body, _ = https_get(https_port, HOST, "/version", root)
        assert (status, body) == (200, "Hello from flaskr")
        first, alpn, _ = served_certificate(https_port, HOST, root, ["h2", "http/1.1"])
        assert alpn == "h2"
        # the challenge really went through nginx: pebble fetched the token from it
        access = (deployment.app("flaskr").access_log).read_text()
        assert "/.well-known/acme-challenge/" in access

        # the host renews by itself: its loop runs under supervisord
        supervisor = Supervisor(HostLayout(deployment.base).supervisor_socket)
        loop = supervisor.process("flaskr-tls-renew")
        assert loop is not None and loop.state in ("RUNNING", "STARTING")

        with HttpsLoad(https_port, root) as load:
            load.wait_for(5)
            at_start = load.ok
            code, out, err = deployment.cli(
                "tls", "renew", "--force", str(deployment.project), capsys=capsys
            )
            during = load.ok - at_start
            assert code == 0, out + err
            assert "renewed" in out
            renewed, _, _ = served_certificate(https_port, HOST, root)
            load.wait_for(20)
        assert renewed.serial_number != first.serial_number
        assert during > 0  # requests went on while certbot renewed and nginx reloaded
        assert load.failed == [] and load.ok >= 20
