"""[tls] in the spec: each mode's keys, the domains it needs, the address HTTPS gets, and
one message per mistake, naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shipyard.errors import SpecError
from shipyard.spec.model import HSTS_DEFAULT_MAX_AGE, LETS_ENCRYPT, Spec, parse_spec

BASE: dict[str, Any] = {"name": "web", "entry": "web:app", "domains": ["app.example.com"]}
FILES = {"mode": "files", "certificate": "c.pem", "key": "k.pem"}
ACME = {"mode": "acme", "email": "ops@example.com"}


def _parse(raw: dict[str, Any]) -> Spec:
    return parse_spec({**BASE, **raw}, Path("/p/shipyard.toml"))


def _error(raw: dict[str, Any]) -> str:
    with pytest.raises(SpecError) as err:
        _parse(raw)
    return err.value.message


def test_files_and_acme_parse_with_their_defaults() -> None:
    files = _parse({"tls": FILES}).tls
    assert files is not None and files.redirect and files.hsts_max_age == 0
    acme = _parse({"tls": ACME}).tls
    assert acme is not None and acme.directory == LETS_ENCRYPT


@pytest.mark.parametrize(
    ("tls", "key", "words"),
    [
        ({"mode": "files", "key": "k.pem"}, "tls", "needs `certificate` and `key`"),
        ({"mode": "acme"}, "tls", "needs `email`"),
        ({**ACME, "email": "not-an-address"}, "tls", "needs `email`"),
        ({**ACME, "directory": "http://acme.test/dir"}, "tls", "must be an https:// URL"),
        ({**FILES, "email": "ops@example.com"}, "tls", "email is not read with mode = 'files'"),
        ({**ACME, "key": "k.pem"}, "tls", "key is not read with mode = 'acme'"),
        ({"mode": "manual"}, "tls.mode", "'files' or 'acme'"),
        ({**FILES, "hsts": -1}, "tls.hsts", "max-age in seconds"),
        ({**FILES, "hsts": "yes"}, "tls.hsts", ""),
        ({**FILES, "redirect": 1}, "tls.redirect", ""),
        ({**FILES, "listen": "8443"}, "tls.listen", "host:port"),
        ({**FILES, "ocsp": True}, "tls.ocsp", "unknown key"),
    ],
)
def test_each_mistake_is_named(tls: dict[str, Any], key: str, words: str) -> None:
    message = _error({"tls": tls})
    assert f"  {key}: " in message and words in message, message


def test_tls_needs_domains_and_acme_no_wildcard() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "web", "entry": "web:app", "tls": FILES}, Path("/p/shipyard.toml"))
    assert "tls needs `domains`" in err.value.message
    message = _error({"domains": ["*.example.com"], "tls": ACME})
    assert "cannot prove a wildcard" in message
    assert _parse({"domains": ["*.example.com"], "tls": FILES}).tls is not None


def test_a_target_s_own_tls_replaces_the_top_level_one() -> None:
    spec = _parse(
        {
            "tls": FILES,
            "targets": {
                "prod": {"hosts": ["web1"], "lb": "lb1", "tls": ACME},
                "staging": {"hosts": ["web2"]},
            },
        }
    )
    prod, staging = spec.tls_for("prod"), spec.tls_for("staging")
    assert prod is not None and prod.mode == "acme"
    assert staging is not None and staging.mode == "files"
    assert spec.tls_for("local") is spec.tls
    message = _error({"targets": {"prod": {"hosts": ["web1"], "tls": {"mode": "acme"}}}})
    assert "targets.prod.tls: " in message


def test_acme_on_an_ssh_target_needs_its_lb() -> None:
    message = _error({"tls": ACME, "targets": {"prod": {"hosts": ["web1"]}}})
    assert "target 'prod' has tls.mode = 'acme' and no `lb`" in message
    spec = _parse({"tls": ACME, "targets": {"prod": {"hosts": ["web1"], "lb": "lb1"}}})
    assert spec.tls_for("prod") is spec.tls


def test_hsts_true_is_two_years_and_a_number_is_its_max_age() -> None:
    assert _parse({"tls": {**FILES, "hsts": True}}).tls.hsts_max_age == HSTS_DEFAULT_MAX_AGE  # type: ignore[union-attr]
    assert _parse({"tls": {**FILES, "hsts": 300}}).tls.hsts_max_age == 300  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("plain", "given", "https"),
    [
        ("0.0.0.0:80", "", "0.0.0.0:443"),
        ("127.0.0.1:8080", "", "127.0.0.1:8443"),
        ("127.0.0.1:9000", "127.0.0.1:9443", "127.0.0.1:9443"),
    ],
)
def test_the_https_address(plain: str, given: str, https: str) -> None:
    tls = _parse({"tls": {**FILES, "listen": given}}).tls
    assert tls is not None and tls.https_listen(plain) == https


def test_a_plain_port_with_no_usual_https_port_beside_it_needs_tls_listen() -> None:
    tls = _parse({"tls": FILES}).tls
    assert tls is not None
    with pytest.raises(SpecError) as err:
        tls.https_listen("127.0.0.1:9000")
    assert "tls.listen" in str(err.value)
