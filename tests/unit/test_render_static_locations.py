"""The nginx locations of static dirs: a nested one answers 404 for hidden files and backups."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import crossplane
import pytest

from shipyard.build.static import is_never_served
from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.spec.model import Spec

NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")
STATIC = {"/static": Path("/r/static/0-static"), "/.well-known/acme": Path("/r/static/1-acme")}
HIDDEN = [".env", ".git/config", ".htpasswd", "app.js~", "#app.js#", ".app.js.swp", "a/b.bak"]
SERVED = ["style.css", "js/app.js", "a~b.css", "x.bak.css", "ok"]


def _parse(text: str, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "site.conf"
    path.write_text("events {}\nhttp {\n" + text + "\n}\n")
    payload = crossplane.parse(str(path), combine=True, check_ctx=True, check_args=True)
    assert payload["status"] == "ok", payload["errors"]
    http = next(d for d in payload["config"][0]["parsed"] if d["directive"] == "http")
    return next(d for d in http["block"] if d["directive"] == "server")["block"]  # type: ignore[no-any-return]


def _static_locations(server: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {
        d["args"][0]: d["block"]
        for d in server
        if d["directive"] == "location"
        and len(d["args"]) == 1
        and d["args"][0] != "/"
        and not d["args"][0].startswith("@")
    }


def _nested_regex(block: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    nested = [d for d in block if d["directive"] == "location"]
    # the first, which nginx tries first: hidden names and backups; then names with a content
    # hash (cached for a year), which a hidden name never reaches
    assert len(nested) in (1, 2) and nested[0]["args"][0] == "~"
    return nested[0]["args"][1], nested[0]["block"]


@pytest.fixture
def spec(example_spec_dict: dict[str, object]) -> Spec:
    return Spec.model_validate(example_spec_dict)


@pytest.fixture(params=["site", "lb"])
def server(request: pytest.FixtureRequest, spec: Spec, tmp_path: Path) -> list[dict[str, Any]]:
    if request.param == "site":
        app = HostLayout(Path("/srv/sy")).app("flaskr")
        text = render.site_conf(spec, app, "abc", "blue", STATIC, "127.0.0.1:8080", NGINX)
    else:
        backends = [("10.0.0.1:80", False)]
        text = render.lb_conf(spec, "abc", backends, STATIC, "0.0.0.0:80", Path("/a"), Path("/e"))
    return _parse(text, tmp_path)


def test_each_static_location_answers_404_for_hidden_names_and_backups(
    server: list[dict[str, Any]],
) -> None:
    locations = _static_locations(server)
    assert set(locations) == {"/static/", "/.well-known/acme/"}
    for prefix, block in locations.items():
        regex, inner = _nested_regex(block)
        assert [(d["directive"], d["args"]) for d in inner] == [("return", ["404"])]
        matches = re.compile(regex).search  # nginx matches a regex location anywhere in the URI
        for name in HIDDEN:
            assert matches(prefix + name), (prefix, name)
            assert any(is_never_served(part) for part in name.split("/"))  # the build agrees
        for name in SERVED:
            assert not matches(prefix + name), (prefix, name)
            assert not any(is_never_served(part) for part in name.split("/"))


def test_the_app_s_own_dot_paths_are_not_static(server: list[dict[str, Any]]) -> None:
    """/.well-known/ outside a static prefix goes to the app (location /)."""
    locations = _static_locations(server)
    regex, _ = _nested_regex(locations["/.well-known/acme/"])
    assert re.search(regex, "/.well-known/acme/token") is None  # the prefix's own dot is fine
    root = [d for d in server if d["directive"] == "location" and d["args"] == ["/"]]
    assert root and not any(d["directive"] == "location" for d in root[0]["block"])
