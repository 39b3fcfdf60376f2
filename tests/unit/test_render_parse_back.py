"""Rendered configs read back by the programs' own parsers say what the spec asked for, and
nothing more, whatever the spec's values: nginx's site through crossplane, supervisor's
programs through supervisor's own loader (supervisor.options)."""

from __future__ import annotations

import pwd
import shlex
import string
import tempfile
from pathlib import Path
from typing import Any

import crossplane
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from supervisor import options

from shipyard.host import render
from shipyard.host.layout import HostLayout
from shipyard.host.render import NginxBinary
from shipyard.spec.model import ServerType, Spec

NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")
LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
DOMAIN = st.builds(
    lambda wild, labels: ("*." if wild else "") + ".".join(labels),
    st.booleans(),
    st.lists(LABEL, min_size=1, max_size=3),
)
NAME = st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True)
PREFIX = st.lists(LABEL, min_size=1, max_size=2).map(lambda parts: "/" + "/".join(parts))
# what a command line may hold: quotes, percent signs, braces, tabs, non-ASCII
ARG_TEXT = st.text(
    alphabet=st.sampled_from(string.ascii_letters + string.digits + " %{};$#'\"\\\t=é☃-_/."),
    min_size=1,
    max_size=12,
)
COMMAND = st.lists(ARG_TEXT, min_size=1, max_size=4).map(shlex.join)


def _spec(**raw: Any) -> Spec:
    return Spec.model_validate({"name": "web", "entry": "web:app", **raw})


def _parse_nginx(text: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.conf"
        path.write_text("events {}\nhttp {\n" + text + "\n}\n")
        payload = crossplane.parse(str(path), combine=True, check_ctx=True, check_args=True)
    assert payload["status"] == "ok", payload["errors"]
    http = next(d for d in payload["config"][0]["parsed"] if d["directive"] == "http")
    return http["block"]  # type: ignore[no-any-return]


def _one(block: list[dict[str, Any]], directive: str) -> list[str]:
    found = [d["args"] for d in block if d["directive"] == directive]
    assert len(found) == 1, (directive, found)
    return found[0]  # type: ignore[no-any-return]


@settings(max_examples=150, deadline=None)
@given(
    name=NAME,
    domains=st.lists(DOMAIN, max_size=3, unique=True),
    port=st.integers(1, 65535),
    static=st.dictionaries(PREFIX, LABEL, max_size=3),
    server=st.sampled_from([ServerType.GUNICORN, ServerType.UWSGI]),
    timeout=st.integers(1, 3600),
)
def test_the_site_read_back_by_nginx_s_grammar_is_what_the_spec_asked_for(
    name: str,
    domains: list[str],
    port: int,
    static: dict[str, str],
    server: ServerType,
    timeout: int,
) -> None:
    spec = _spec(name=name, domains=domains, server={"type": server.value, "timeout": timeout})
    app = HostLayout(Path("/srv/sy")).app(name)
    static_dirs = {prefix: Path("/srv/sy/r/static") / d for prefix, d in static.items()}
    listen = f"127.0.0.1:{port}"
    text = render.site_conf(spec, app, "abc123", "green", static_dirs, listen, NGINX)
    http = _parse_nginx(text)
    servers = [d for d in http if d["directive"] == "server"]
    upstreams = [d for d in http if d["directive"] == "upstream"]
    assert len(servers) == 1 and {d["directive"] for d in http} <= {"server", "upstream"}
    block = servers[0]["block"]
    assert _one(block, "listen") == [listen]
    assert _one(block, "server_name") == (domains or [""])
    socket = f"unix:{app.socket('green')}"
    locations = {tuple(d["args"]): d["block"] for d in block if d["directive"] == "location"}
    wanted = {(prefix + "/",) for prefix in static} | {("/",)}
    assert set(locations) - {("@websocket",)} == wanted
    for prefix, directory in static.items():
        alias = _one(locations[(prefix + "/",)], "alias")
        assert alias == [f"/srv/sy/r/static/{directory}/"]
    root = locations[("/",)]
    if server is ServerType.UWSGI:
        assert not upstreams
        assert _one(root, "uwsgi_pass") == [socket]
        assert _one(root, "uwsgi_read_timeout") == [f"{timeout + 5}s"]
    else:
        assert len(upstreams) == 1
        assert _one(upstreams[0]["block"], "server") == [socket, "fail_timeout=0"]
        assert _one(root, "proxy_pass") == [f"http://{upstreams[0]['args'][0]}"]
        assert _one(root, "proxy_read_timeout") == [f"{timeout + 5}s"]


def _programs(text: str) -> dict[str, Any]:
    parser = options.UnhosedConfigParser()
    parser.read_string(text)
    loader = options.ServerOptions()
    loader.here = "/"
    found = {}
    for section in parser.sections():
        assert section.startswith("program:"), section
        group = section.removeprefix("program:")
        (config,) = loader.processes_from_section(parser, section, group)
        found[group] = config
    return found


@settings(max_examples=150, deadline=None)
@given(
    name=NAME,
    processes=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9]{0,8}", fullmatch=True).filter(lambda n: n != "web"),
        COMMAND,
        max_size=3,
    ),
    tree=st.booleans(),
)
def test_supervisor_s_own_loader_reads_back_each_program_and_its_exact_argv(
    name: str, processes: dict[str, str], tree: bool
) -> None:
    spec = _spec(name=name, processes=processes)
    with tempfile.TemporaryDirectory() as base:
        app = HostLayout(Path(base)).app(name)
        app.app_log("web", "blue").parent.mkdir(parents=True)  # the loader checks log dirs
        launcher = Path(base) / ".shipyard" / "bin" / "launch"
        text = render.program_conf(spec, app, "abc123", "blue", launcher, user="nobody", tree=tree)
        found = _programs(text)
    prefix = [str(launcher), str(app.env_file("blue")), str(app.workdir("abc123", tree))]
    expected = {
        app.program("web", "blue"): [
            *prefix,
            *render.server_argv(spec, app, "abc123", "blue"),
        ]
    }
    for kind, command in processes.items():
        expected[app.program(kind, "blue")] = [*prefix, *shlex.split(command)]
    assert set(found) == set(expected)
    for program, argv in expected.items():
        config = found[program]
        assert shlex.split(config.command) == argv, program
        assert config.directory == str(app.workdir("abc123", tree))
        assert config.environment["VIRTUAL_ENV"] == str(app.venv("abc123"))
        assert config.stdout_logfile.startswith(str(app.shared / "logs"))
        assert config.uid == pwd.getpwnam("nobody").pw_uid


def test_a_command_of_more_than_one_line_is_refused_by_the_spec() -> None:
    with pytest.raises(ValueError, match="a command is one line"):
        _spec(processes={"worker": "echo 'a\n[program:evil]\ncommand=/bin/sh'"})
