"""Who nginx's workers run as, the app socket's mode, and the modes of shared/."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from shipyard.errors import DeployError
from shipyard.host import nginx_workers, render
from shipyard.host.artifact import Artifact, Manifest
from shipyard.host.filesteps import MakeFiles, SetMode
from shipyard.host.layout import HostLayout
from shipyard.host.local import LocalConnection
from shipyard.host.nginx_workers import Workers, managed_workers, reachable, system_nginx_user
from shipyard.host.python import PythonInfo
from shipyard.host.release import install_steps
from shipyard.host.runtime import runtime_files
from shipyard.host.steps import InstallContext
from shipyard.spec.model import ASGI_SERVERS, Spec

NGINX = render.NginxBinary("/usr/sbin/nginx", None, None)
CTX = InstallContext(LocalConnection(), Path("/nonexistent/wheels"))
ME = pwd.getpwuid(os.geteuid()).pw_name
MY_GROUP = grp.getgrgid(os.getegid()).gr_name


def _spec(server: str = "gunicorn") -> Spec:
    kind = "asgi" if server in ASGI_SERVERS else "wsgi"
    return Spec.model_validate(
        {"name": "a", "entry": "a:app", "kind": kind, "server": {"type": server}}
    )


@pytest.mark.parametrize(("mode", "umask"), [(0o600, "0o177"), (0o660, "0o117")])
def test_gunicorn_s_umask_gives_its_socket_the_mode(mode: int, umask: str) -> None:
    app = HostLayout(Path("/srv/sy")).app("a")
    for server in ("gunicorn", "gunicorn-uvicorn", "gunicorn-asgi", "aiohttp"):
        conf = render.server_conf_files(_spec(server), app, "r", mode)["gunicorn.conf.py"]
        assert f"\numask = {umask}\n" in conf
        assert 0o777 & ~int(umask, 8) == mode


@pytest.mark.parametrize("mode", [0o600, 0o660])
def test_uwsgi_chmods_its_socket(mode: int) -> None:
    app = HostLayout(Path("/srv/sy")).app("a")
    conf = render.server_conf_files(_spec("uwsgi"), app, "r", mode)["uwsgi.ini"]
    assert f"\nchmod-socket = {mode:o}\n" in conf


def test_managed_nginx_names_its_worker_user_and_group_only_when_told(tmp_path: Path) -> None:
    host = HostLayout(tmp_path)
    as_root = runtime_files(host, NGINX, Workers("www-data", "shipyard"))
    plain = runtime_files(host, NGINX, None)
    conf = {u.dest: u.content.decode() for u in as_root}[host.nginx_conf]  # type: ignore[index]
    assert conf.startswith("# Managed") and "\nuser www-data shipyard;\n" in conf
    assert "\nuser " not in {u.dest: u.content.decode() for u in plain}[host.nginx_conf]  # type: ignore[index]


def test_supervisord_keeps_its_logs_private_and_the_apps_umask_usual(tmp_path: Path) -> None:
    host = HostLayout(tmp_path)
    assert "\numask = 027\n" in render.supervisord_conf(host, NGINX, None)
    app = host.app("a")
    programs = render.program_conf(_spec(), app, "r", "blue", host.launcher)
    assert "\numask = 022\n" in programs


def test_not_root_nginx_workers_are_shipyard_s_own_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert managed_workers(tmp_path, None) is None
    assert nginx_workers.socket_mode() == 0o600


def test_as_root_nginx_workers_get_a_user_of_their_own_with_the_app_s_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(nginx_workers, "_user_exists", lambda name: name == ME)
    monkeypatch.setattr(nginx_workers, "WORKER_USERS", ("nosuchuser", ME))
    monkeypatch.setattr(nginx_workers, "reachable", lambda path, user, group: True)
    assert managed_workers(tmp_path, None) == Workers(ME, MY_GROUP)
    assert nginx_workers.socket_mode() == 0o660
    # a base its user cannot reach (under /root, 0700): the workers stay root to serve at all
    monkeypatch.setattr(nginx_workers, "reachable", lambda path, user, group: False)
    assert managed_workers(tmp_path, None) == Workers("root", "root")


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another owner needs root")
def test_reachable_follows_every_directory_down_to_the_base() -> None:
    top = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's own tmp dirs are 0700
    try:
        base = top / "a" / "base"
        base.mkdir(parents=True)
        for path in (top, top / "a", base):
            path.chmod(0o755)
        assert reachable(base, "nobody", "nogroup")
        (top / "a").chmod(0o750)
        assert not reachable(base, "nobody", "nogroup")
        os.chown(top / "a", 0, grp.getgrnam("nogroup").gr_gid)
        assert reachable(base, "nobody", "nogroup")  # through the group
    finally:
        shutil.rmtree(top)


@pytest.mark.parametrize(
    ("conf", "user"),
    [
        ("user www-data;\nworker_processes auto;\n", "www-data"),
        ("  user  nginx nginx;\n", "nginx"),
        ("# user nobody;\nevents {}\n", "www-data"),
    ],
)
def test_the_host_s_nginx_user_comes_from_its_user_directive(conf: str, user: str) -> None:
    assert system_nginx_user(conf) == user


def test_install_closes_shared_to_other_users(tmp_path: Path) -> None:
    app = HostLayout(Path("/srv/sy")).app("a")
    artifact_dir = tmp_path / "art"
    artifact_dir.mkdir()
    manifest = Manifest(
        id="abc123", app="a", created="now", python="3.11.2", source_sha256="s",
        lock_sha256="l", git_sha="", app_wheel=None, wheels=[], static={},
    )  # fmt: skip
    steps = install_steps(
        _spec(), app, Artifact(artifact_dir, manifest, False), Path("/w"),
        PythonInfo("/usr/bin/python3", "3.11.2"), run_as="web",
    )  # fmt: skip
    assert SetMode(0o750, (app.shared,), group_of="web") in steps
    assert SetMode(0o750, (app.run,)) in steps
    assert SetMode(0o700, (app.data, app.var, app.logs)) in steps
    assert MakeFiles(0o640, (app.access_log, app.error_log)) in steps


def test_set_mode_and_make_files(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    SetMode(0o750, (shared,), group_of=ME).run(CTX)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o750
    assert shared.stat().st_gid == pwd.getpwnam(ME).pw_gid
    log = shared / "access.log"
    log.write_text("kept\n")
    log.chmod(0o644)
    MakeFiles(0o640, (log, shared / "error.log")).run(CTX)
    assert log.read_text() == "kept\n" and stat.S_IMODE(log.stat().st_mode) == 0o640
    assert stat.S_IMODE((shared / "error.log").stat().st_mode) & 0o007 == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory of another group needs root")
def test_apps_of_one_base_whose_users_differ_in_group_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nginx_workers, "reachable", lambda path, user, group: True)
    (tmp_path / "one" / "shared" / "run").mkdir(parents=True)
    (tmp_path / "two" / "shared" / "run").mkdir(parents=True)
    assert managed_workers(tmp_path, None) == Workers("www-data", "root")
    os.chown(tmp_path / "one" / "shared" / "run", 0, grp.getgrnam("nogroup").gr_gid)
    with pytest.raises(DeployError, match=r"different groups: one and this one \(root\)"):
        managed_workers(tmp_path, None)
    with pytest.raises(DeployError, match=r"different groups: two and this one \(nogroup\)"):
        managed_workers(tmp_path, "nobody")  # now 'two', root's, is the odd one out
