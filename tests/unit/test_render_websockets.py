"""WebSockets in the rendered nginx configs: a handshake is dispatched to a location of its
own, with the upgrade headers and long timeouts; plain requests keep theirs and upstream
keepalive; nothing a site defines collides when several apps share one nginx."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import annotated_types
import pytest

from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.host.runtime import find_nginx
from shipyard.spec.model import ServerSpec, Spec

NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")


def _spec(name: str = "chat", **server: object) -> Spec:
    return Spec.model_validate(
        {"name": name, "entry": "chat:app", "kind": "asgi", "server": {"type": "uvicorn", **server}}
    )


def _block(text: str, header: str) -> list[str]:
    """The directives of the block that opens with `header`, nested blocks flattened."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header + " {")
    depth, body = 0, []
    for line in lines[start:]:
        stripped = line.strip()
        depth += stripped.count("{") - stripped.count("}")
        body.append(stripped)
        if depth == 0:
            return [line for line in body[1:-1] if line and not line.startswith("#")]
    raise AssertionError(f"{header} is not closed")


def _site(spec: Spec, host: HostLayout) -> str:
    return render.site_conf(spec, host.app(spec.name), "r1", "blue", {}, "127.0.0.1:8080", NGINX)


def test_a_websocket_handshake_goes_to_its_own_location_with_the_upgrade_headers() -> None:
    text = _site(_spec(websocket_timeout=900), HostLayout(Path("/srv/sy")))
    plain = _block(text, "location /")
    assert "error_page 418 = @websocket;" in plain
    assert plain[plain.index("if ($http_upgrade ~* websocket) {") + 1] == "return 418;"
    upgraded = _block(text, "location @websocket")
    assert "proxy_pass http://shipyard_chat;" in upgraded
    assert "proxy_http_version 1.1;" in upgraded
    assert "proxy_set_header Upgrade $http_upgrade;" in upgraded
    assert 'proxy_set_header Connection "upgrade";' in upgraded
    assert "proxy_read_timeout 900s;" in upgraded and "proxy_send_timeout 900s;" in upgraded
    assert "add_header X-Shipyard-Release r1 always;" in upgraded


def test_plain_requests_keep_their_timeouts_and_upstream_keepalive() -> None:
    plain = _block(_site(_spec(timeout=30), HostLayout(Path("/srv/sy"))), "location /")
    assert "proxy_http_version 1.1;" in plain
    assert 'proxy_set_header Connection "";' in plain
    assert not [line for line in plain if "Upgrade" in line]
    assert "proxy_read_timeout 35s;" in plain and "proxy_send_timeout 35s;" in plain


def test_the_websocket_timeout_defaults_to_an_hour() -> None:
    upgraded = _block(_site(_spec(), HostLayout(Path("/srv/sy"))), "location @websocket")
    assert "proxy_read_timeout 3600s;" in upgraded


def test_uwsgi_sites_have_no_websocket_location() -> None:
    spec = Spec.model_validate({"name": "chat", "entry": "chat:app", "server": {"type": "uwsgi"}})
    text = _site(spec, HostLayout(Path("/srv/sy")))
    assert "@websocket" not in text and "$http_upgrade" not in text


def test_the_load_balancer_passes_websockets_on_to_the_web_hosts() -> None:
    spec = _spec(websocket_timeout=120)
    text = render.lb_conf(
        spec, "r1", [("10.0.0.1:80", False)], {}, "0.0.0.0:80", Path("/a"), Path("/e")
    )
    plain = _block(text, "location /")
    assert "error_page 418 = @websocket;" in plain and 'proxy_set_header Connection "";' in plain
    upgraded = _block(text, "location @websocket")
    assert "proxy_pass http://shipyard_lb_chat;" in upgraded
    assert "proxy_set_header Upgrade $http_upgrade;" in upgraded
    assert 'proxy_set_header Connection "upgrade";' in upgraded
    assert "proxy_read_timeout 120s;" in upgraded
    assert "keepalive 32;" in _block(text, "upstream shipyard_lb_chat")


def _limit(field: str) -> int:
    rule = next(
        m for m in ServerSpec.model_fields[field].metadata if isinstance(m, annotated_types.Le)
    )
    assert isinstance(rule.le, int)
    return rule.le


def test_old_workers_outlive_any_app_s_drain_and_graceful_stop() -> None:
    """worker_shutdown_timeout must never cut a WebSocket before the app's own 1012 close."""
    text = render.nginx_main_conf(HostLayout(Path("/srv/sy")), NGINX, run_as=None)
    assert f"worker_shutdown_timeout {render.OLD_WORKERS_LIFETIME}s;" in text
    assert _limit("websocket_drain") + _limit("graceful_timeout") < render.OLD_WORKERS_LIFETIME


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_two_apps_sites_pass_nginx_t_in_one_nginx(tmp_path: Path) -> None:
    """Each site defines nothing nginx allows only once per http context."""
    host = HostLayout(tmp_path / "base")
    nginx = find_nginx()
    for directory in (host.nginx_sites, host.nginx_dir / "tmp", host.logs):
        directory.mkdir(parents=True)
    host.nginx_conf.write_text(render.nginx_main_conf(host, nginx, run_as=None))
    for name, port in (("chat", 8081), ("board", 8082)):
        spec = _spec(name)
        host.app(name).logs.mkdir(parents=True)
        site = render.site_conf(spec, host.app(name), "r1", "blue", {}, f"127.0.0.1:{port}", nginx)
        (host.nginx_sites / f"{name}.conf").write_text(site)
    result = subprocess.run(
        [*render.nginx_command(host, nginx), "-t", "-q"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
