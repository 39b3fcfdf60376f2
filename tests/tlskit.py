"""Certificates the TLS tests make themselves: a CA, and leaves it signs."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    certificate: Path  # PEM, leaf first then the CA
    key: Path


class TestCA:
    """A CA of the test's own; `issue` signs a leaf for host names."""

    __test__ = False

    def __init__(self, where: Path) -> None:
        self.where = where
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shipyard test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = where / "ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, names: list[str], stem: str = "leaf", ips: list[str] | None = None) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=10))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName(n) for n in names]
                    + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips or []]
                ),
                False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        chain = self.where / f"{stem}.pem"
        chain.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + self.cert.public_bytes(serialization.Encoding.PEM)
        )
        key_file = self.where / f"{stem}.key"
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Issued(chain, key_file)


class _ByAddress(http.client.HTTPSConnection):
    """HTTPS to `address` as `host`: the name is sent (SNI) and verified, not resolved."""

    def __init__(
        self, address: str, host: str, port: int, context: ssl.SSLContext, timeout: float
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self.address = address
        self.tls_context = context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls_context.wrap_socket(raw, server_hostname=self.host)


def https_get(
    port: int, host: str, path: str, ca: Path, timeout: float = 10, address: str = "127.0.0.1"
) -> tuple[int, str, dict[str, str]]:
    """GET over HTTPS to `address`:`port` as `host`, verified against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    conn = _ByAddress(address, host, port, context, timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


def served_certificate(
    port: int, host: str, ca: Path, alpn: list[str] | None = None, address: str = "127.0.0.1"
) -> tuple[x509.Certificate, str | None, str | None]:
    """The leaf served to `host` (verified against `ca`), the ALPN protocol and TLS version."""
    context = ssl.create_default_context(cafile=str(ca))
    if alpn:
        context.set_alpn_protocols(alpn)
    raw = socket.create_connection((address, port), timeout=10)
    with context.wrap_socket(raw, server_hostname=host) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol(), tls.version()
