"""The HTTPS site read back by nginx's grammar (crossplane): the TLS profile, HTTP/2, the
redirect, the ACME challenge's location before it, HSTS only when asked and only over
HTTPS, and X-Forwarded-Proto from the scheme."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import crossplane
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.host.render import INTERMEDIATE_CIPHERS, NginxBinary, TlsSite
from shipyard.spec.model import ServerType, Spec

NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")
CERT, KEY = Path("/srv/sy/web/shared/tls/fullchain.pem"), Path("/srv/sy/web/shared/tls/privkey.pem")
WEBROOT = Path("/srv/sy/web/shared/tls/webroot")


def _site(
    tls: TlsSite | None, server: ServerType = ServerType.GUNICORN
) -> list[list[dict[str, Any]]]:
    spec = Spec.model_validate(
        {
            "name": "web",
            "entry": "web:app",
            "domains": ["app.example.com"],
            "static": {"/static": "static"},
            "server": {"type": server.value},
        }
    )
    app = HostLayout(Path("/srv/sy")).app("web")
    static = {"/static": Path("/srv/sy/web/releases/r1/static")}
    text = render.site_conf(spec, app, "r1", "blue", static, "0.0.0.0:80", NGINX, tls)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.conf"
        path.write_text("events {}\nhttp {\n" + text + "\n}\n")
        payload = crossplane.parse(str(path), combine=True, check_ctx=True, check_args=True)
    assert payload["status"] == "ok", payload["errors"]
    http = next(d for d in payload["config"][0]["parsed"] if d["directive"] == "http")
    return [d["block"] for d in http["block"] if d["directive"] == "server"]


def _all(block: list[dict[str, Any]], directive: str) -> list[list[str]]:
    found: list[list[str]] = []
    for d in block:
        if d["directive"] == directive:
            found.append(d["args"])
        found += _all(d.get("block", []), directive)
    return found


def _one(block: list[dict[str, Any]], directive: str) -> list[str]:
    found = [d["args"] for d in block if d["directive"] == directive]
    assert len(found) == 1, (directive, found)
    return found[0]  # type: ignore[no-any-return]


def _locations(block: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    return {tuple(d["args"]): d["block"] for d in block if d["directive"] == "location"}


def test_the_https_server_follows_the_intermediate_profile_with_http2() -> None:
    _, https = _site(TlsSite("0.0.0.0:443", CERT, KEY))
    assert _one(https, "listen") == ["0.0.0.0:443", "ssl", "http2"]
    assert _one(https, "server_name") == ["app.example.com"]
    assert _one(https, "ssl_certificate") == [str(CERT)]
    assert _one(https, "ssl_certificate_key") == [str(KEY)]
    assert _one(https, "ssl_protocols") == ["TLSv1.2", "TLSv1.3"]
    ciphers = _one(https, "ssl_ciphers")[0].split(":")
    assert ciphers == INTERMEDIATE_CIPHERS.split(":")
    assert all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in ciphers)
    assert _one(https, "ssl_prefer_server_ciphers") == ["off"]
    assert _one(https, "ssl_session_tickets") == ["off"]
    assert _one(https, "ssl_session_cache")[0].startswith("shared:")
    assert _all(https, "ssl_stapling") == []  # no OCSP responder named: nothing to staple
    # the app is served over HTTPS, and told so
    locations = _locations(https)
    assert set(locations) >= {("/",), ("/static/",), ("@websocket",)}
    assert ["X-Forwarded-Proto", "$scheme"] in _all(locations[("/",)], "proxy_set_header")


def test_plain_http_redirects_to_https_with_its_port_and_the_uri() -> None:
    plain, _ = _site(TlsSite("127.0.0.1:8443", CERT, KEY))
    assert _one(plain, "listen") == ["0.0.0.0:80"]
    locations = _locations(plain)
    assert set(locations) == {("/",)}
    assert _one(locations[("/",)], "return") == ["301", "https://$host:8443$request_uri"]
    plain, _ = _site(TlsSite("0.0.0.0:443", CERT, KEY))
    assert _one(_locations(plain)[("/",)], "return") == ["301", "https://$host$request_uri"]


def test_without_the_redirect_plain_http_serves_the_app_too() -> None:
    plain, https = _site(TlsSite("0.0.0.0:443", CERT, KEY, redirect=False))
    # the static hidden-file guard and the WebSocket hand-over only
    assert _all(plain, "return") == [["404"], ["418"]]
    assert _all(plain, "proxy_pass") == _all(https, "proxy_pass") != []


def test_the_acme_challenge_is_answered_on_plain_http_before_the_redirect() -> None:
    plain, _ = _site(TlsSite("0.0.0.0:443", CERT, KEY, webroot=WEBROOT))
    challenge = _locations(plain)[("^~", "/.well-known/acme-challenge/")]
    assert _one(challenge, "root") == [str(WEBROOT)]
    assert _one(challenge, "try_files") == ["$uri", "=404"]


def test_an_acme_certificate_not_there_yet_serves_plain_http_and_the_challenge_only() -> None:
    (plain,) = _site(TlsSite("0.0.0.0:443", None, None, webroot=WEBROOT))
    locations = _locations(plain)
    assert ("^~", "/.well-known/acme-challenge/") in locations
    # no redirect to an HTTPS not served yet
    assert ["301"] not in [r[:1] for r in _all(plain, "return")]
    assert _all(plain, "proxy_pass") != []


@settings(max_examples=30, deadline=None)
@given(
    max_age=st.sampled_from([0, 300, 63072000]),
    server=st.sampled_from([ServerType.GUNICORN, ServerType.UWSGI]),
)
def test_hsts_is_sent_over_https_only_and_only_when_asked(max_age: int, server: ServerType) -> None:
    plain, https = _site(
        TlsSite("0.0.0.0:443", CERT, KEY, redirect=False, hsts_max_age=max_age), server
    )
    assert not [h for h in _all(plain, "add_header") if h[0] == "Strict-Transport-Security"]
    sent = [h for h in _all(https, "add_header") if h[0] == "Strict-Transport-Security"]
    if not max_age:
        assert sent == []
        return
    # every block that sets headers sets it too: nginx inherits add_header only when a
    # block sets none of its own
    setting = [d for d in _blocks(https) if any(x["directive"] == "add_header" for x in d)]
    assert len(sent) == len(setting) > 0
    assert all(h == ["Strict-Transport-Security", f"max-age={max_age}", "always"] for h in sent)


def _blocks(block: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    found = []
    for d in block:
        if "block" in d:
            found.append(d["block"])
            found += _blocks(d["block"])
    return found


@pytest.mark.parametrize("stapling", [True, False])
def test_ocsp_stapling_when_the_certificate_names_a_responder(stapling: bool) -> None:
    _, https = _site(TlsSite("0.0.0.0:443", CERT, KEY, stapling=stapling))
    assert _all(https, "ssl_stapling") == ([["on"]] if stapling else [])
    assert _all(https, "ssl_trusted_certificate") == ([[str(CERT)]] if stapling else [])


def test_uwsgi_is_told_the_scheme_too() -> None:
    _, https = _site(TlsSite("0.0.0.0:443", CERT, KEY), ServerType.UWSGI)
    assert ["HTTP_X_FORWARDED_PROTO", "$scheme"] in _all(https, "uwsgi_param")
