"""`shipyard export container`, built and run for real with podman: the example app's image
answers through its mapped port, runs as a non-root user with the app server as PID 1,
holds the release's wheels and nothing secret, and stops gracefully on SIGTERM.

No image registry is reachable, so the base image is a Debian 12 root file system made by
mmdebstrap and imported once per session, into a podman store the tests own.

How podman runs here: this machine's sandbox mounts cgroups in hybrid mode (v1 controllers,
an empty v2) and withholds CAP_SYS_RESOURCE. crun refuses hybrid cgroups ("cgroups in hybrid
mode not supported"), and podman's default rlimits are above the sandbox's, which no process
may raise (setrlimit: EPERM). So containers run with runc and lowered rlimits, and builds
run their RUN steps with chroot isolation; both work on any Linux host as well.
"""

from __future__ import annotations

import http.client
import json
import mmap
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shipyard.cli.commands import main

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXAMPLE = EXAMPLES / "flask-factory"
ASGI_EXAMPLE = EXAMPLES / "asgi-app"
DJANGO_EXAMPLE = EXAMPLES / "django-site"
BASE_IMAGE = "localhost/shipyard-test-base:bookworm"
SECRET_VALUE = "planted-secret-0c5e7d1a"
QUOTED = 'a "q" $HOME \\x'  # a spec value the Containerfile must quote: read back as it is
RUN_FLAGS = ("--runtime", "runc", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


@dataclass(frozen=True)
class Podman:
    """podman on a store of its own (images, containers, volumes)."""

    root: Path

    def __call__(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            "podman",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--cgroup-manager",
            "cgroupfs",
            *args,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
        return done


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Podman]:
    """The session's podman store, with the Debian 12 base image in it."""
    root = tmp_path_factory.mktemp("podman")
    engine = Podman(root)
    rootfs = root / "bookworm.tar"
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            # uWSGI's wheel, built here from its sdist, links against these two
            "--include=python3,python3-venv,ca-certificates,libpython3.11,libxml2",
            "bookworm",
            str(rootfs),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    engine("import", str(rootfs), BASE_IMAGE)
    rootfs.unlink()
    try:
        yield engine
    finally:
        engine("rm", "--all", "--force", check=False)
        engine("volume", "prune", "--force", check=False)
        engine("rmi", "--all", "--force", check=False)
        # the store's overlay directory is a bind mount of its own
        subprocess.run(
            ["umount", str(root / "storage" / "overlay")], capture_output=True, check=False
        )
        shutil.rmtree(root, ignore_errors=True)


# Forks a child that forks a grandchild (sleeping 3 s under a name of its own), and
# exits at once: the grandchild is an orphan.
ORPHAN_MARK = "orphan-sleeper"
ORPHAN = f"""
import os, time
if os.fork() == 0:
    if os.fork() == 0:
        os.execvp("sleep", ["{ORPHAN_MARK}", "3"])
    os._exit(0)
os.wait()
time.sleep(0.2)
"""


def _processes(podman: Podman, name: str) -> dict[str, tuple[str, str]]:
    """The container's processes: (state, parent pid) by their command line's first word."""
    script = (
        "for p in /proc/[0-9]*; do "
        "echo $(cut -d' ' -f3,4 $p/stat) $(tr '\\0' ' ' < $p/cmdline); done 2>/dev/null"
    )
    found = {}
    for line in podman("exec", name, "sh", "-c", script).stdout.splitlines():
        words = line.split()
        if len(words) >= 2:  # not a process that ended while it was read
            found[words[2] if len(words) > 2 else "?"] = (words[0], words[1])
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _wait_for(port: int, path: str, timeout: float = 30) -> tuple[int, bytes]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = _get(port, path)
            if status == 200:
                return status, body
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {path} through port {port} never answered 200")
        time.sleep(0.2)


def test_the_exported_image_serves_the_app_as_a_host_deploy_would(
    deployment: Deployment,
    podman: Podman,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = deployment.project
    spec_file = project / "shipyard.toml"
    spec_file.write_text(
        spec_file.read_text().replace("[env]\n", f"[env]\nQUOTED = '{QUOTED}'\n", 1)
    )
    # a secret where `config set` keeps it (the local target's config): never in the export
    code, _, err = deployment.cli(
        "config", "set", f"FLASKR_SECRET_KEY={SECRET_VALUE}", "--dir", str(project), capsys=capsys
    )
    assert code == 0, err
    context = tmp_path / "context"
    code, out, err = deployment.cli(
        "export", "container", str(project), "-o", str(context), "--base", BASE_IMAGE,
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "FLASKR_SECRET_KEY" in out and "--env-file" in out
    for path in context.rglob("*"):
        assert not path.is_file() or SECRET_VALUE.encode() not in path.read_bytes(), path

    tag = "localhost/flaskr-test:latest"
    started = time.monotonic()
    podman("build", "--isolation", "chroot", "--format", "docker", "-t", tag, str(context))
    build_seconds = time.monotonic() - started

    # what the image holds: the release's wheels (by name and version), no pip, no wheels,
    # and no secret in any layer
    installed = podman(
        "run", "--rm", *RUN_FLAGS, tag, "python", "-c",
        "import importlib.metadata as m; "
        "print(sorted(f\"{d.metadata['Name'].lower()}-{d.version}\" for d in m.distributions()))",
    ).stdout  # fmt: skip
    wheels = sorted(
        "-".join(p.name.split("-")[:2]).lower().replace("_", "-")
        for p in (context / "wheels").iterdir()
    )
    assert sorted(json.loads(installed.replace("'", '"'))) == wheels
    assert podman("run", "--rm", *RUN_FLAGS, tag, "sh", "-c", "ls /app/venv/bin/pip* /tmp/shipyard",
                  check=False).returncode != 0  # fmt: skip
    saved = tmp_path / "image.tar"
    podman("save", "--output", str(saved), tag)
    with saved.open("rb") as image, mmap.mmap(image.fileno(), 0, access=mmap.ACCESS_READ) as layers:
        assert layers.find(SECRET_VALUE.encode()) == -1
    saved.unlink()
    inspected = json.loads(podman("image", "inspect", tag).stdout)[0]
    assert inspected["Config"]["User"] == "10001:10001"
    assert inspected["Config"]["StopSignal"] == "SIGTERM"
    assert "FLASKR_SECRET_KEY" not in json.dumps(inspected["Config"]["Env"])
    assert inspected["Healthcheck"]["Test"][:2] == ["CMD", "/app/venv/bin/python"]

    # the spec's setup command, as a one-off container on the data volume, then the server
    env_file = tmp_path / "flaskr.env"
    env_file.write_text(f"FLASKR_SECRET_KEY={SECRET_VALUE}\n")
    env_file.chmod(0o600)
    podman("volume", "create", "flaskr-data")
    volume = ("--env-file", str(env_file), "-v", "flaskr-data:/data")
    podman("run", "--rm", *RUN_FLAGS, *volume, tag, "flask", "--app", "flaskr", "init-db")
    port = _free_port()
    name = "flaskr-test"
    podman(
        "run", "-d", "--name", name, *RUN_FLAGS, *volume, "-p", f"127.0.0.1:{port}:8000", tag
    )  # fmt: skip
    try:
        _, page = _wait_for(port, "/")
        assert b"Hello from flaskr" in page
        status, css = _get(port, "/static/style.css")
        assert status == 200
        assert css == (project / "flaskr" / "static" / "style.css").read_bytes()

        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        pid1 = podman("exec", name, "cat", "/proc/1/cmdline").stdout.rstrip("\0").split("\0")
        assert "/app/venv/bin/gunicorn" in pid1 and "0.0.0.0:8000" in pid1
        assert podman("exec", name, "printenv", "QUOTED").stdout == QUOTED + "\n"
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        # an orphan (a grandchild whose parent exited) is reparented to PID 1, the server,
        # which reaps it when it exits: why the image needs no init of its own
        podman("exec", name, "python", "-c", ORPHAN)
        assert _processes(podman, name)[ORPHAN_MARK] == ("S", "1")
        time.sleep(4)
        assert ORPHAN_MARK not in _processes(podman, name)
        assert not [p for p, (state, _) in _processes(podman, name).items() if state == "Z"]

        graceful = 20  # the spec's server.graceful_timeout (its default)
        started = time.monotonic()
        podman("stop", "--time", str(graceful + 5), name)
        stop_seconds = time.monotonic() - started
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = podman("logs", name).stderr + podman("logs", name).stdout
    finally:
        podman("rm", "--force", name, check=False)
    assert state["ExitCode"] == 0, logs
    assert stop_seconds < graceful, stop_seconds
    assert "Handling signal: term" in logs and "Shutting down: Master" in logs, logs
    print(f"image built in {build_seconds:.1f} s; stopped in {stop_seconds:.2f} s")


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


@dataclass(frozen=True)
class ServerCase:
    """An example app under another server than the first test's gunicorn."""

    example: Path
    server: str
    env: tuple[str, ...]  # `podman run` options: what the app needs to start
    setup: tuple[str, ...]  # the spec's setup command, run first as a one-off container
    page: str  # a path that answers 200, and what its body holds
    holds: bytes
    pid1: tuple[str, ...]  # the first words of PID 1's command line
    stop_signal: str
    stopped: tuple[str, ...]  # what the server logs when it stops gracefully


SERVER_CASES = {
    "uvicorn": ServerCase(
        ASGI_EXAMPLE,
        "uvicorn",
        (),
        (),
        "/",
        b"hello from asgi-app",
        ("/app/venv/bin/python", "/app/venv/bin/uvicorn"),
        "SIGTERM",
        ("Shutting down", "Finished server process"),
    ),
    "uwsgi": ServerCase(
        EXAMPLE,
        "uwsgi",
        ("-e", f"FLASKR_SECRET_KEY={SECRET_VALUE}"),
        ("flask", "--app", "flaskr", "init-db"),
        "/version",
        b"Hello from flaskr",
        ("/app/venv/bin/uwsgi",),
        "SIGINT",  # SIGTERM reloads uWSGI
        ("SIGINT/SIGTERM received", "goodbye to uWSGI"),
    ),
}


@pytest.mark.parametrize("case", SERVER_CASES.values(), ids=SERVER_CASES.keys())
def test_each_server_binds_the_containers_port_and_stops_gracefully(
    case: ServerCase,
    podman: Podman,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """uvicorn binds the port itself (no launcher, no unix socket), uWSGI speaks HTTP on it;
    their compiled wheels (uvloop, httptools; uWSGI's, built here from its sdist) install
    and start on the base image's Python, or the image build stops."""
    monkeypatch.setenv("SHIPYARD_CACHE", str(cache))
    project = tmp_path / "app"
    shutil.copytree(case.example, project, ignore=shutil.ignore_patterns("__pycache__", "instance"))
    spec_file = project / "shipyard.toml"
    text = spec_file.read_text()
    if f'type = "{case.server}"' not in text:
        text = text.replace("[server]\n", f'[server]\ntype = "{case.server}"\n', 1)
    spec_file.write_text(text)
    context = tmp_path / "context"
    code, out, err = _cli(
        capsys, "export", "container", str(project), "-o", str(context), "--base", BASE_IMAGE,
        "--port", "8080",
    )  # fmt: skip
    assert code == 0, err
    # uWSGI's wheel is built here: the export names it, as it needs this machine's libraries
    assert ("built on this machine: uwsgi-" in out) is (case.server == "uwsgi"), out
    tag = f"localhost/{case.server}-test:latest"
    podman("build", "--isolation", "chroot", "--format", "docker", "-t", tag, str(context))
    volume = ("-v", f"{case.server}-data:/data")
    if case.setup:
        podman("run", "--rm", *RUN_FLAGS, *case.env, *volume, tag, *case.setup)
    port = _free_port()
    name = f"{case.server}-test"
    podman(
        "run", "-d", "--name", name, *RUN_FLAGS, *case.env, *volume,
        "-p", f"127.0.0.1:{port}:8080", tag,
    )  # fmt: skip
    try:
        assert case.holds in _wait_for(port, case.page)[1]
        pid1 = podman("exec", name, "cat", "/proc/1/cmdline").stdout.rstrip("\0").split("\0")
        assert tuple(pid1[: len(case.pid1)]) == case.pid1, pid1
        assert "0.0.0.0:8080" in pid1 or pid1[-4:] == ["--host", "0.0.0.0", "--port", "8080"]
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        inspected = json.loads(podman("image", "inspect", tag).stdout)[0]
        assert inspected["Config"]["StopSignal"] == case.stop_signal
        started = time.monotonic()
        podman("stop", "--time", "35", name)
        stop_seconds = time.monotonic() - started
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = podman("logs", name).stderr + podman("logs", name).stdout
    finally:
        podman("rm", "--force", name, check=False)
    assert state["ExitCode"] == 0, logs
    assert stop_seconds < 30, stop_seconds  # the spec's graceful_timeout (its default)
    for line in case.stopped:
        assert line in logs, logs


def test_a_django_image_migrates_and_serves_the_site_with_its_secret_given_at_run_time(
    podman: Podman,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The Django example with no glue, as a host deploys it: the settings wrapper in the
    venv, its collected files in /app/static, `migrate` as a one-off container on the data
    volume (where SQLite goes), DJANGO_SECRET_KEY only from --env-file."""
    monkeypatch.setenv("SHIPYARD_CACHE", str(cache))
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "base"))
    project = tmp_path / "site"
    shutil.copytree(
        DJANGO_EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "db.sqlite3")
    )
    # the secret where `config set` keeps it: never in the export
    code, _, err = _cli(
        capsys, "config", "set", f"DJANGO_SECRET_KEY={SECRET_VALUE}", "--dir", str(project)
    )
    assert code == 0, err
    context = tmp_path / "context"
    code, out, err = _cli(
        capsys, "export", "container", str(project), "-o", str(context), "--base", BASE_IMAGE
    )
    assert code == 0, err
    assert "DJANGO_SECRET_KEY" in out and "--env-file" in out
    assert "python manage.py migrate --noinput" in out
    for path in context.rglob("*"):
        assert not path.is_file() or SECRET_VALUE.encode() not in path.read_bytes(), path

    tag = "localhost/django-site-test:latest"
    started = time.monotonic()
    podman("build", "--isolation", "chroot", "--format", "docker", "-t", tag, str(context))
    build_seconds = time.monotonic() - started
    inspected = json.loads(podman("image", "inspect", tag).stdout)[0]
    assert "DJANGO_SECRET_KEY" not in json.dumps(inspected["Config"]["Env"])
    assert "DJANGO_SETTINGS_MODULE=shipyard_django_settings" in inspected["Config"]["Env"]

    env_file = tmp_path / "site.env"
    env_file.write_text(f"DJANGO_SECRET_KEY={SECRET_VALUE}\n")
    env_file.chmod(0o600)
    podman("volume", "create", "django-site-data")
    volume = ("--env-file", str(env_file), "-v", "django-site-data:/data")
    migrated = podman(
        "run", "--rm", *RUN_FLAGS, *volume, tag, "python", "manage.py", "migrate", "--noinput"
    )  # fmt: skip
    assert "Applying notes.0001_initial... OK" in migrated.stdout, migrated.stdout
    # the database went to the volume (the wrapper's DJANGO_DATA_DIR), owned by the app user
    listed = podman("run", "--rm", *RUN_FLAGS, *volume, tag, "ls", "-ln", "/data/data").stdout
    assert "db.sqlite3" in listed and " 10001 10001 " in listed, listed

    port = _free_port()
    name = "django-site-test"
    podman(
        "run", "-d", "--name", name, *RUN_FLAGS, *volume, "-p", f"127.0.0.1:{port}:8000", tag
    )  # fmt: skip
    try:
        # the admin's login page: a template whose {% static %} names come from the
        # collected files' manifest (a missing one would be a 500 with DEBUG off)
        _, page = _wait_for(port, "/admin/login/")
        assert b"csrfmiddlewaretoken" in page
        assert b"/static/admin/css/base." in page  # a hashed name: ManifestStaticFilesStorage
        # the site's own page reads the database that `migrate` made on the volume
        status, index = _get(port, "/")
        assert status == 200 and b"hello from django" in index
        # Django serves no static file with DEBUG off: the image holds them, under their
        # hashed names, for a front (the Kubernetes pod's nginx copies /app/static)
        css = re.search(rb"/static/(notes/site\.[0-9a-f]{12}\.css)", index)
        assert css is not None, index
        assert _get(port, f"/static/{css[1].decode()}")[0] == 404
        held = podman("exec", name, "cat", f"/app/static/django-static/{css[1].decode()}")
        assert held.stdout == (project / "notes" / "static" / "notes" / "site.css").read_text()
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        settings = podman(
            "exec", name, "python", "-c",
            "from django.conf import settings as s; "
            f"print(s.SECRET_KEY == {SECRET_VALUE!r}, s.DEBUG, s.STATIC_ROOT, s.MEDIA_ROOT, "
            "s.DATABASES['default']['NAME'])",
        ).stdout.split()  # fmt: skip
        assert settings == [
            "True", "False", "/app/static/django-static", "/data/media", "/data/data/db.sqlite3"
        ]  # fmt: skip
        assert podman("healthcheck", "run", name, check=False).returncode == 0
        started = time.monotonic()
        podman("stop", "--time", "25", name)
        stop_seconds = time.monotonic() - started
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        logs = podman("logs", name).stderr + podman("logs", name).stdout
    finally:
        podman("rm", "--force", name, check=False)
    assert state["ExitCode"] == 0, logs
    assert stop_seconds < 20, stop_seconds  # the spec's graceful_timeout (its default)
    assert "Shutting down: Master" in logs, logs
    print(f"Django image built in {build_seconds:.1f} s; stopped in {stop_seconds:.2f} s")
