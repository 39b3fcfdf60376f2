"""Rendered configs: nginx site and main config, supervisor programs, app server configs, env."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.spec.model import Spec

NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")


@pytest.fixture
def spec(example_spec_dict: dict[str, object]) -> Spec:
    return Spec.model_validate(example_spec_dict)


@pytest.fixture
def host() -> HostLayout:
    return HostLayout(Path("/srv/sy"))


def with_changes(spec: Spec, **changes: object) -> Spec:
    """A validated copy: model_copy(update=...) would skip validation and enum coercion."""
    raw = spec.model_dump()
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return Spec.model_validate(raw)


def test_site_points_at_the_slot_socket_and_serves_static(spec: Spec, host: HostLayout) -> None:
    app = host.app("flaskr")
    static = {"/static": app.release("abc") / "static" / "0-static"}
    text = render.site_conf(spec, app, "abc", "green", static, "127.0.0.1:8080", NGINX)
    assert "server unix:/srv/sy/flaskr/shared/run/green.sock fail_timeout=0;" in text
    assert "proxy_pass http://shipyard_flaskr;" in text
    assert "location /static/ {" in text
    assert "alias /srv/sy/flaskr/releases/abc/static/0-static/;" in text
    assert "expires 1h;" in text
    # static, its hashed names, /, @websocket
    assert text.count("add_header X-Shipyard-Release abc always;") == 4
    assert "listen 127.0.0.1:8080;" in text
    assert "uwsgi_pass" not in text


def test_site_with_uwsgi_uses_the_uwsgi_protocol(spec: Spec, host: HostLayout) -> None:
    uwsgi = with_changes(spec, server={"type": "uwsgi"})
    text = render.site_conf(uwsgi, host.app("flaskr"), "abc", "blue", {}, "127.0.0.1:80", NGINX)
    assert "uwsgi_pass unix:/srv/sy/flaskr/shared/run/blue.sock;" in text
    assert "include /etc/nginx/uwsgi_params;" in text
    assert "proxy_pass" not in text


def test_site_server_names(spec: Spec, host: HostLayout) -> None:
    named = with_changes(spec, domains=["example.com", "www.example.com"])
    text = render.site_conf(named, host.app("flaskr"), "a", "blue", {}, "0.0.0.0:80", NGINX)
    assert "server_name example.com www.example.com;" in text


def test_program_runs_gunicorn_through_the_launcher(spec: Spec, host: HostLayout) -> None:
    app = host.app("flaskr")
    text = render.program_conf(spec, app, "abc", "blue", host.launcher)
    assert "[program:flaskr-web-blue]" in text
    expected = (
        "command = /srv/sy/.shipyard/bin/shipyard-exec /srv/sy/flaskr/shared/env.blue "
        "/srv/sy/flaskr/releases/abc /srv/sy/flaskr/releases/abc/venv/bin/gunicorn --config "
        "/srv/sy/flaskr/releases/abc/gunicorn.conf.py --bind "
        "unix:/srv/sy/flaskr/shared/run/blue.sock 'flaskr:create_app()'"
    )
    assert expected in text
    assert "autorestart = true" in text
    assert "stopsignal = TERM" in text
    assert f"stopwaitsecs = {spec.server.graceful_timeout + 5}" in text
    assert "stdout_logfile = /srv/sy/flaskr/shared/logs/web-blue.log" in text
    assert "SECRET" not in text


def test_program_includes_extra_processes_and_escapes_percent(spec: Spec, host: HostLayout) -> None:
    worker = with_changes(spec, processes={"worker": "python -m worker --rate 5%"})
    text = render.program_conf(worker, host.app("flaskr"), "abc", "green", host.launcher)
    assert "[program:flaskr-worker-green]" in text
    assert "--rate 5%%" in text


def test_a_source_tree_s_processes_run_in_its_tree(spec: Spec, host: HostLayout) -> None:
    worker = with_changes(spec, processes={"worker": "python worker.py"})
    text = render.program_conf(worker, host.app("flaskr"), "abc", "blue", host.launcher, tree=True)
    tree = "/srv/sy/flaskr/releases/abc/src"
    launch = f"/srv/sy/.shipyard/bin/shipyard-exec /srv/sy/flaskr/shared/env.blue {tree} "
    assert f"command = {launch}/srv/sy/flaskr/releases/abc/venv/bin/gunicorn --config" in text
    assert f"command = {launch}python worker.py\n" in text
    assert text.count(f"directory = {tree}\n") == 2


def test_gunicorn_conf_disables_the_shared_control_socket(spec: Spec, host: HostLayout) -> None:
    files = render.server_conf_files(spec, host.app("flaskr"), "abc")
    conf = files["gunicorn.conf.py"]
    assert "control_socket_disable = True" in conf
    assert f"workers = {render.default_workers()}" in conf
    compile(conf, "gunicorn.conf.py", "exec")


def test_gunicorn_uvicorn_uses_the_uvicorn_worker(spec: Spec, host: HostLayout) -> None:
    asgi = with_changes(spec, kind="asgi", server={"type": "gunicorn-uvicorn"})
    conf = render.server_conf_files(asgi, host.app("flaskr"), "abc")["gunicorn.conf.py"]
    assert 'worker_class = "uvicorn_worker.UvicornWorker"' in conf
    assert render.server_packages(asgi) == [
        "gunicorn",
        "uvicorn-worker",
        "websockets",
        "httptools",
        "uvloop",
    ]


def test_uwsgi_gets_a_shim_that_calls_the_factory(spec: Spec, host: HostLayout) -> None:
    uwsgi = with_changes(spec, server={"type": "uwsgi"})
    files = render.server_conf_files(uwsgi, host.app("flaskr"), "abc")
    assert "from flaskr import create_app as _entry" in files["shipyard_wsgi.py"]
    assert "application = _entry()" in files["shipyard_wsgi.py"]
    assert "wsgi-file = /srv/sy/flaskr/releases/abc/shipyard_wsgi.py" in files["uwsgi.ini"]
    argv = render.server_argv(uwsgi, host.app("flaskr"), "abc", "blue")
    assert argv[-2:] == ("--socket", "/srv/sy/flaskr/shared/run/blue.sock")


@pytest.mark.parametrize(
    "value",
    ["plain", "it's", 'double "quotes"', "$HOME `id` $(id)", "multi\nline", "back\\slash", ""],
)
def test_env_file_values_read_back_exactly_by_sh(tmp_path: Path, value: str) -> None:
    env = tmp_path / "env"
    env.write_bytes(render.env_file({"VALUE": value}))
    out = subprocess.run(
        ["sh", "-c", f'set -a; . "{env}"; printf %s "$VALUE"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == value


def test_nginx_main_conf_keeps_everything_under_the_base(host: HostLayout) -> None:
    text = render.nginx_main_conf(host, NGINX, run_as=None)
    assert "pid /srv/sy/.shipyard/nginx/nginx.pid;" in text
    assert "client_body_temp_path /srv/sy/.shipyard/nginx/tmp/client_body;" in text
    assert "include /srv/sy/.shipyard/nginx/sites/*.conf;" in text
    assert "daemon off;" in text
    assert "\nuser " not in text
    assert "user root root;" in render.nginx_main_conf(host, NGINX, run_as="root root")


def test_supervisord_conf_runs_nginx_and_includes_programs(host: HostLayout) -> None:
    text = render.supervisord_conf(host, NGINX, None)
    assert "file = /srv/sy/.shipyard/supervisor.sock" in text
    assert "chmod = 0700" in text
    assert "files = /srv/sy/.shipyard/programs/*.conf" in text
    # through its start script, which takes over the sockets shipyard hands over, if any
    assert (
        "command = python3 -I -S /srv/sy/.shipyard/bin/nginx-start "
        "/srv/sy/.shipyard/nginx-handover.sock /usr/sbin/nginx -p /srv/sy/.shipyard/nginx/ -c"
    ) in text
    assert "stopsignal = QUIT" in text
    # one that crash-loops on bind() (nginx retries it for a while, then exits) never counts
    # as started
    assert f"startsecs = {render.NGINX_STARTSECS}" in text and render.NGINX_STARTSECS >= 3
