"""A real ACME server for the tests: Debian's pebble, its names resolved by
pebble-challtestsrv's DNS (every name is the address the test names), its HTTP-01
validation sent to the port the test names (shipyard's nginx). Validation really
happens: PEBBLE_VA_ALWAYS_VALID is not set."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tlskit import TestCA

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Pebble:
    directory: str  # the ACME directory URL
    api_ca: Path  # the CA of pebble's own HTTPS (certbot's REQUESTS_CA_BUNDLE)
    management: str  # https://localhost:port, where /roots/0 is its issuing root

    def issuing_root(self, where: Path) -> Path:
        """The root pebble signs certificates with (a new one each run), as a PEM file."""
        context = ssl.create_default_context(cafile=str(self.api_ca))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context) as answer:
            pem = answer.read()
        path = where / "pebble-root.pem"
        path.write_bytes(pem)
        return path


def _wait_listening(
    port: int, process: subprocess.Popen[bytes], log: Path, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args!r} exited: {log.read_text()}")
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{process.args!r} is not listening on {port}: {log.read_text()}")


@contextmanager
def pebble(
    where: Path, http_port: int, api_host: str = "127.0.0.1", answer: str = "127.0.0.1"
) -> Iterator[Pebble]:
    """pebble and its DNS on random ports; HTTP-01 answers are fetched from `http_port` of
    `answer` (every name resolves to it); its API listens on `api_host`."""
    ca = TestCA(where)
    served = ca.issue(["localhost"], stem="pebble-api", ips=[api_host])
    dns, api, management = free_port(), free_port(), free_port()
    config = where / "pebble-config.json"
    config.write_text(
        json.dumps(
            {
                "pebble": {
                    "listenAddress": f"{api_host}:{api}",
                    "managementListenAddress": f"127.0.0.1:{management}",
                    "certificate": str(served.certificate),
                    "privateKey": str(served.key),
                    "httpPort": http_port,
                    "tlsPort": free_port(),
                    "ocspResponderURL": "",
                    "externalAccountBindingRequired": False,
                }
            }
        )
    )
    env = {
        **os.environ,
        "PEBBLE_VA_NOSLEEP": "1",  # no random wait before each validation
        "PEBBLE_WFE_NONCEREJECT": "0",  # no nonces rejected at random
    }
    env.pop("PEBBLE_VA_ALWAYS_VALID", None)
    dns_log, pebble_log = where / "challtestsrv.log", where / "pebble.log"
    with dns_log.open("wb") as dns_out, pebble_log.open("wb") as pebble_out:
        resolver = subprocess.Popen(
            [
                CHALLTESTSRV,
                "-dns01",
                f"127.0.0.1:{dns}",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                f"127.0.0.1:{free_port()}",
                "-defaultIPv4",
                answer,
                "-defaultIPv6",
                "",
            ],
            stdout=dns_out,
            stderr=subprocess.STDOUT,
        )
        server = subprocess.Popen(
            [PEBBLE, "-config", str(config), "-dnsserver", f"127.0.0.1:{dns}"],
            stdout=pebble_out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            _wait_listening(api, server, pebble_log, api_host)
            _wait_listening(management, server, pebble_log)
            yield Pebble(f"https://{api_host}:{api}/dir", ca.pem, f"https://localhost:{management}")
        finally:
            for process in (server, resolver):
                process.terminate()
                process.wait(10)
