"""`shipyard export container`: the rendered Containerfile for each app server, parsed back
(dockerfile-parse), its health check run against a real HTTP server, and the build context
the writer lays out (the artifact's wheels, no secret anywhere, --force)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path, PurePosixPath

import pytest
from click.testing import CliRunner
from dockerfile_parse import DockerfileParser
from wheelkit import make_wheel

from shipyard.build.source import source_files
from shipyard.cli.commands import cli, main
from shipyard.errors import BuildError, UsageError
from shipyard.host import render
from shipyard.host.artifact import MANIFEST, Artifact, Manifest, WheelRef
from shipyard.host.djangoapp import STATIC_DIR, WRAPPER_MODULE
from shipyard.project.spec_file import load_spec
from shipyard.spec.model import ServerType, Spec
from shipyard.targets.export import containerfile as cf
from shipyard.targets.export import image, nginx
from shipyard.targets.export import kubernetes as k8s
from shipyard.targets.export.container import write_context

SECRET_VALUE = "planted-secret-9f1c2e"


def _spec(server: str = "gunicorn", **raw: object) -> Spec:
    return Spec.model_validate(
        {"name": "shop", "entry": "shop:create_app()", "server": {"type": server}, **raw}
    )


def _manifest(tree: bool = False, python: str = "3.11.2") -> Manifest:
    return Manifest(
        id="abc123def456",
        app="shop",
        created="2026-01-01T00:00:00Z",
        python=python,
        source_sha256="s",
        lock_sha256="l",
        git_sha="0123abcd",
        app_wheel=None if tree else WheelRef("shop-1.0-py3-none-any.whl", "a" * 64),
        wheels=[WheelRef("flask-3.1.3-py3-none-any.whl", "b" * 64)],
        static={"/static": "0-static"},
        tree={"shop/__init__.py": "c" * 64} if tree else {},
    )


def _parse(text: str) -> DockerfileParser:
    return DockerfileParser(fileobj=BytesIO(text.encode()))


def _instructions(parsed: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in parsed.structure if i["instruction"] == name]


def _final_stage(parsed: DockerfileParser) -> list[dict[str, str]]:
    """The instructions after the last FROM: the image itself."""
    structure: list[dict[str, str]] = parsed.structure
    last = max(n for n, i in enumerate(structure) if i["instruction"] == "FROM")
    return structure[last:]


def _final(parsed: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in _final_stage(parsed) if i["instruction"] == name]


# the server, its stop signal, and how it binds 0.0.0.0:8000
SERVERS = [
    ("gunicorn", "SIGTERM", ["--bind", "0.0.0.0:8000"]),
    ("gunicorn-uvicorn", "SIGTERM", ["--bind", "0.0.0.0:8000"]),
    ("gunicorn-asgi", "SIGTERM", ["--bind", "0.0.0.0:8000"]),
    ("aiohttp", "SIGTERM", ["--bind", "0.0.0.0:8000"]),
    ("uwsgi", "SIGINT", ["--http-socket", "0.0.0.0:8000"]),
    ("uvicorn", "SIGTERM", ["--host", "0.0.0.0", "--port", "8000"]),
    ("granian", "SIGTERM", ["--host", "0.0.0.0", "--port", "8000"]),
]


@pytest.mark.parametrize(("server", "signal", "bind"), SERVERS)
def test_the_image_runs_the_hosts_server_command_as_pid_1_on_tcp(
    server: str, signal: str, bind: list[str]
) -> None:
    """Exec form (no shell between the container's stop signal and the server), the same
    argv a host runs but for its bind, the server's own graceful stop signal, a non-root
    user, a health check in exec form; the base is a build argument."""
    spec = _spec(server)
    parsed = _parse(cf.containerfile(spec, _manifest(), cf.ImageSettings()))

    assert _instructions(parsed, "FROM") == ["${BASE} AS install", "${BASE}"]
    assert _instructions(parsed, "ARG") == ["BASE=docker.io/library/python:3.11-slim-bookworm"]
    assert _final(parsed, "USER") == [f"{cf.APP_UID}:{cf.APP_UID}"]
    assert cf.APP_UID != 0
    assert _final(parsed, "STOPSIGNAL") == [signal]
    assert _final(parsed, "EXPOSE") == ["8000"]
    [healthcheck] = _final(parsed, "HEALTHCHECK")
    probe = json.loads(healthcheck.split(" CMD ", 1)[1])
    assert probe == ["/app/venv/bin/python", "-I", "/app/shipyard_healthcheck.py"]
    assert "--start-period=30s" in healthcheck  # the spec's healthcheck.timeout

    [cmd] = _final(parsed, "CMD")
    command = json.loads(cmd)  # exec form: the server is PID 1
    assert command[0].startswith("/app/venv/bin/")
    assert command == list(cf.server_command(spec, 8000))
    joined = " ".join(command)
    assert " ".join(bind) in joined
    assert "unix:" not in joined and "shipyard_server.py" not in joined
    on_host = render.server_command(
        spec, Path("/app/venv"), Path("/app"), render.UnixSocket(Path("/run/a.sock"))
    )
    if ServerType(server).on_gunicorn or server == "uwsgi":  # the same but for the bind
        assert [w for w in command if w not in bind] == [
            w for w in on_host if w not in ("--bind", "unix:/run/a.sock", "--socket", "/run/a.sock")
        ]
    else:  # the host's launcher runs the same server argv, with the socket it binds
        asgi = render.asgi_server_argv(spec, Path("/app/venv"))
        assert command[: len(asgi)] == asgi
        assert command[len(asgi) : len(asgi) + 2] == ["--workers", str(cf.CONTAINER_WORKERS)]


@pytest.mark.parametrize(("server", "files"), [
    ("gunicorn", {"gunicorn.conf.py"}),
    ("aiohttp", {"gunicorn.conf.py", "shipyard_aiohttp.py"}),
    ("uwsgi", {"uwsgi.ini", "shipyard_wsgi.py"}),
    ("uvicorn", set()),
])  # fmt: skip
def test_the_servers_config_files_are_the_hosts_with_the_images_paths(
    server: str, files: set[str]
) -> None:
    context = cf.context_files(_spec(server), _manifest(), cf.ImageSettings())
    app_files = {n.split("/", 1)[1] for n in context if n.startswith(f"{cf.APP_FILES}/")}
    assert app_files == files | {cf.HEALTHCHECK_SCRIPT}
    for name in files:
        text = context[f"{cf.APP_FILES}/{name}"]
        assert "/srv/" not in text and "releases/" not in text
    if server == "uwsgi":
        assert "wsgi-file = /app/shipyard_wsgi.py" in context["app/uwsgi.ini"]
        assert "virtualenv = /app/venv" in context["app/uwsgi.ini"]
    if server == "aiohttp":
        assert 'pythonpath = "/app"' in context["app/gunicorn.conf.py"]


def test_workers_and_graceful_timeout_come_from_the_spec() -> None:
    spec = Spec.model_validate(
        {"name": "shop", "entry": "m:app", "server": {"workers": 5, "graceful_timeout": 12}}
    )
    context = cf.context_files(spec, _manifest(), cf.ImageSettings())
    assert "workers = 5\n" in context["app/gunicorn.conf.py"]
    assert "graceful_timeout = 12\n" in context["app/gunicorn.conf.py"]
    default = cf.context_files(_spec(), _manifest(), cf.ImageSettings())
    assert f"workers = {cf.CONTAINER_WORKERS}\n" in default["app/gunicorn.conf.py"]


def test_the_wheels_are_installed_offline_by_their_hashes_without_resolving() -> None:
    manifest = _manifest()
    text = cf.containerfile(_spec(), manifest, cf.ImageSettings())
    assert "--no-index --no-deps --require-hashes" in text
    lines = cf.requirements_txt(manifest).splitlines()[1:]
    assert lines == [
        f"/tmp/shipyard/wheels/flask-3.1.3-py3-none-any.whl --hash=sha256:{'b' * 64}",
        f"/tmp/shipyard/wheels/shop-1.0-py3-none-any.whl --hash=sha256:{'a' * 64}",
    ]


def test_the_base_image_has_the_wheels_python() -> None:
    """The default base is the official image of the artifact's Python; a build on a base
    of another Python stops at once (the check runs that base's python3)."""
    text = cf.containerfile(_spec(), _manifest(python="3.12.4"), cf.ImageSettings())
    assert "ARG BASE=docker.io/library/python:3.12-slim-bookworm" in text
    given = cf.containerfile(_spec(), _manifest(), cf.ImageSettings(base="localhost/base:1"))
    assert "ARG BASE=localhost/base:1\n" in given
    [check] = [line for line in text.splitlines() if line.startswith("RUN python3 -c ")]
    argv = ["sh", "-c", check.removeprefix("RUN ").replace("python3", sys.executable, 1)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    this = "{}.{}".format(*sys.version_info[:2])
    assert done.returncode == (0 if this == "3.12" else 1)
    if this != "3.12":
        assert f"the base image has Python {this}; the release wheels are for Python 3.12" in (
            done.stderr
        )


def test_the_build_stops_unless_the_server_starts_on_the_base_image() -> None:
    """A wheel built on the exporting machine (uWSGI's, from its sdist) may link against
    shared libraries the base lacks: the build runs the server's --version to find out, and
    the export names such wheels."""
    for server, executable in [("uwsgi", "uwsgi"), ("uvicorn", "uvicorn"), ("aiohttp", "gunicorn")]:
        text = cf.containerfile(_spec(server), _manifest(), cf.ImageSettings())
        assert f"RUN /app/venv/bin/{executable} --version >/dev/null\n" in text
    manifest = _manifest()
    local = WheelRef("uwsgi-2.0.31-cp311-cp311-linux_x86_64.whl", "d" * 64)
    manylinux = WheelRef("markupsafe-3.0.4-cp311-cp311-manylinux_2_17_x86_64.whl", "e" * 64)
    built = Manifest(**{**manifest.__dict__, "wheels": [*manifest.wheels, local, manylinux]})
    assert cf.built_here(built) == [local.file]
    assert cf.built_here(manifest) == []


def test_the_environment_is_the_specs_and_never_a_secret() -> None:
    spec = _spec(env={"GREETING": "hi there"}, secrets={"API_TOKEN": "required"})
    parsed = _parse(cf.containerfile(spec, _manifest(), cf.ImageSettings()))
    envs = parsed.envs
    assert envs["GREETING"] == "hi there"
    assert envs["PATH"].startswith("/app/venv/bin:")
    assert envs["SHIPYARD_RELEASE"] == "abc123def456"
    assert envs["PYTHONPATH"] == "/app"
    assert "API_TOKEN" not in envs
    assert _final(parsed, "WORKDIR") == ["/app"]
    assert parsed.labels["io.shipyard.release"] == "abc123def456"
    assert parsed.labels["org.opencontainers.image.revision"] == "0123abcd"


def test_a_value_with_a_line_break_is_refused() -> None:
    assert cf.dockerfile_quote('a"b$c\\d') == '"a\\"b\\$c\\\\d"'
    with pytest.raises(ValueError, match="line break"):
        cf.dockerfile_quote("a\nb")


def test_persistent_paths_are_links_into_the_data_volume() -> None:
    spec = _spec(persistent=["uploads"], persistent_files=["db/app.sqlite3"])
    text = cf.containerfile(spec, _manifest(tree=True), cf.ImageSettings())
    assert "RUN mkdir -p /app/src && ln -s /data/data/uploads /app/src/uploads\n" in text
    assert "ln -s /data/data/db/app.sqlite3 /app/src/db/app.sqlite3" in text
    assert "mkdir -p /data/data /data/data/db /data/data/uploads /data/var" in text
    assert "ln -s /data/var /app/venv/var" in text  # Flask's instance folder, as on a host
    parsed = _parse(text)
    assert parsed.envs["PYTHONPATH"] == "/app/src"
    assert _final(parsed, "WORKDIR") == ["/app/src"]
    assert _final(parsed, "VOLUME") == ["/data"]


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []  # noqa: RUF012 (the class is the handler's state)

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def answering() -> Iterator[tuple[int, type[_Answer]]]:
    handler = type("Answer", (_Answer,), {"paths": []})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("healthcheck", "status", "healthy"), [
    ({}, 404, True),  # neither path nor status: any answer below 500 proves the app loaded
    ({}, 503, False),
    ({"path": "/health"}, 200, True),
    ({"path": "/health"}, 404, False),  # a path set: the strict statuses only
    ({"path": "/health", "status": [418]}, 418, True),
    ({"path": "/health", "status": [418]}, 200, False),
])  # fmt: skip
def test_the_health_check_honours_the_specs_status_rule(
    answering: tuple[int, type[_Answer]],
    tmp_path: Path,
    healthcheck: dict[str, object],
    status: int,
    healthy: bool,
) -> None:
    port, handler = answering
    handler.status = status
    script = tmp_path / cf.HEALTHCHECK_SCRIPT
    script.write_text(cf.healthcheck_script(_spec(healthcheck=healthcheck), port))
    done = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=30
    )
    assert (done.returncode == 0) is healthy, done.stderr
    assert handler.paths == [healthcheck.get("path", "/")]
    if not healthy:
        assert f"unhealthy: HTTP {status}" in done.stderr


def test_the_health_check_fails_when_nothing_listens(tmp_path: Path) -> None:
    script = tmp_path / cf.HEALTHCHECK_SCRIPT
    script.write_text(cf.healthcheck_script(_spec(), 1))
    done = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, timeout=30)
    assert done.returncode == 1
    assert b"unhealthy" in done.stderr


# The writer, over an artifact laid out as build/artifact.py lays it out.


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _artifact(root: Path, tree: bool = False) -> tuple[Artifact, Path]:
    """An artifact in `root`/artifact and its wheel store, with real (small) wheels."""
    store = root / "wheels"
    dep = make_wheel(store, "dep", {"dep/__init__.py": ""})
    path = root / "artifact"
    (path / "static" / "0-static").mkdir(parents=True)
    (path / "static" / "0-static" / "style.css").write_text("body {}\n")
    app_wheel = None
    if tree:
        (path / "src" / "shop").mkdir(parents=True)
        (path / "src" / "shop" / "__init__.py").write_text("app = None\n")
    else:
        wheel = make_wheel(path / "app", "shop", {"shop/__init__.py": "app = None\n"})
        app_wheel = WheelRef(wheel.name, _sha256(wheel))
    manifest = Manifest(
        id="abc123def456",
        app="shop",
        created="2026-01-01T00:00:00Z",
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="",
        app_wheel=app_wheel,
        wheels=[WheelRef(dep.name, _sha256(dep))],
        static={"/static": "0-static"},
        tree={"shop/__init__.py": "x"} if tree else {},
    )
    (path / MANIFEST).write_text(manifest.to_json())
    return Artifact(path, manifest, reused=True), store


def _all_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_the_context_holds_the_artifacts_wheels_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret is where `config set` and the user's shell would hold it: in a config
    file of a base dir, and in the environment of the exporting process."""
    base = tmp_path / "base"
    (base / "shop" / "shared").mkdir(parents=True)
    (base / "shop" / "shared" / "config.json").write_text(json.dumps({"API_TOKEN": SECRET_VALUE}))
    monkeypatch.setenv("SHIPYARD_HOME", str(base))
    monkeypatch.setenv("API_TOKEN", SECRET_VALUE)
    artifact, store = _artifact(tmp_path)
    spec = _spec(secrets={"API_TOKEN": "required"}, static={"/static": "shop/static"})
    out = tmp_path / "context"

    written = write_context(spec, artifact, store, out, cf.ImageSettings(port=9000))

    wheels = sorted(p.name for p in (out / cf.WHEELS).iterdir())
    assert wheels == ["dep-1.0-py3-none-any.whl", "shop-1.0-py3-none-any.whl"]
    refs = [*artifact.manifest.wheels, artifact.manifest.app_wheel]
    by_name = {r.file: r.sha256 for r in refs if r is not None}
    for wheel in (out / cf.WHEELS).iterdir():
        assert _sha256(wheel) == by_name[wheel.name]
    assert (out / "app" / "static" / "0-static" / "style.css").read_text() == "body {}\n"
    assert (out / "app" / "gunicorn.conf.py").is_file()
    assert "EXPOSE 9000" in (out / cf.CONTAINERFILE).read_text()
    assert SECRET_VALUE.encode() not in _all_bytes(out)
    assert written.secrets == ("API_TOKEN",)
    assert written.static == ("/static",)
    assert written.wheels == 2
    assert written.stop_signal == "SIGTERM"
    assert all(p.stat().st_mode & 0o777 in (0o644, 0o755) for p in out.rglob("*"))


def test_a_source_tree_release_has_its_tree_in_the_context(tmp_path: Path) -> None:
    artifact, store = _artifact(tmp_path, tree=True)
    out = tmp_path / "context"
    write_context(_spec(), artifact, store, out, cf.ImageSettings())
    assert (out / "app" / "src" / "shop" / "__init__.py").read_text() == "app = None\n"
    assert [p.name for p in (out / cf.WHEELS).iterdir()] == ["dep-1.0-py3-none-any.whl"]


def test_a_wheel_that_differs_from_the_manifest_is_refused(tmp_path: Path) -> None:
    artifact, store = _artifact(tmp_path)
    (store / "dep-1.0-py3-none-any.whl").write_bytes(b"not the wheel")
    with pytest.raises(BuildError, match=r"dep-1\.0-py3-none-any\.whl of release abc123def456"):
        write_context(_spec(), artifact, store, tmp_path / "context", cf.ImageSettings())


def test_a_non_empty_directory_needs_force_which_replaces_only_the_context(
    tmp_path: Path,
) -> None:
    artifact, store = _artifact(tmp_path)
    out = tmp_path / "context"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(UsageError, match="is not empty") as refused:
        write_context(_spec(), artifact, store, out, cf.ImageSettings())
    assert "--force" in (refused.value.hint or "")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    write_context(_spec(), artifact, store, out, cf.ImageSettings(), force=True)
    (out / cf.WHEELS / "stale-0.1-py3-none-any.whl").write_bytes(b"old")
    write_context(_spec(), artifact, store, out, cf.ImageSettings(), force=True)
    assert not (out / cf.WHEELS / "stale-0.1-py3-none-any.whl").exists()
    assert (out / "notes.txt").read_text() == "mine\n"
    assert (out / cf.CONTAINERFILE).is_file()


def test_an_env_value_with_a_line_break_is_refused_with_a_reason(tmp_path: Path) -> None:
    artifact, store = _artifact(tmp_path)
    spec = _spec(env={"BANNER": "two\nlines"})
    with pytest.raises(UsageError, match=r"env\.BANNER in the spec holds a line break") as err:
        write_context(spec, artifact, store, tmp_path / "context", cf.ImageSettings())
    assert "--env-file" in (err.value.hint or "")
    assert not (tmp_path / "context").exists()


DJANGO_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django-site"


def _django_artifact(root: Path) -> tuple[Artifact, Path]:
    """The Django example's release as build/artifact.py lays it out: its source tree, its
    collected files in static/django-static (STATIC_URL /static/), Django's wheel."""
    store = root / "wheels"
    dep = make_wheel(store, "django", {"django/__init__.py": ""})
    path = root / "artifact"
    collected = path / "static" / STATIC_DIR
    (collected / "admin" / "css").mkdir(parents=True)
    (collected / "admin" / "css" / "base.0123abcd.css").write_text("body {}\n")
    (collected / "staticfiles.json").write_text('{"paths": {}}\n')
    tree = source_files(DJANGO_EXAMPLE, [])
    for name in tree:
        (path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DJANGO_EXAMPLE / name, path / "src" / name)
    manifest = Manifest(
        id="abc123def456",
        app="django-site",
        created="2026-01-01T00:00:00Z",
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="",
        app_wheel=None,
        wheels=[WheelRef(dep.name, _sha256(dep))],
        static={"/static/": STATIC_DIR},
        tree={str(name): "x" for name in tree},
    )
    (path / MANIFEST).write_text(manifest.to_json())
    return Artifact(path, manifest, reused=True), store


def test_a_django_projects_context_has_its_settings_wrapper_static_files_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example's spec, as a host deploy reads it. Its generated secret is planted where
    `config set` keeps it (the local target's config) and in the exporting process's
    environment: it is in no file of the context."""
    base = tmp_path / "base"
    (base / "django-site" / "shared").mkdir(parents=True)
    config = {"DJANGO_SECRET_KEY": SECRET_VALUE}
    (base / "django-site" / "shared" / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("SHIPYARD_HOME", str(base))
    monkeypatch.setenv("DJANGO_SECRET_KEY", SECRET_VALUE)
    spec = load_spec(DJANGO_EXAMPLE)
    artifact, store = _django_artifact(tmp_path)
    out = tmp_path / "context"

    written = write_context(spec, artifact, store, out, cf.ImageSettings())

    site = out / "app" / "venv" / "lib" / "python3.11" / "site-packages"
    wrapper = (site / f"{WRAPPER_MODULE}.py").read_text()
    assert wrapper == render.django_settings_module("mysite.settings")  # a host's, as it is
    collected = out / "app" / "static" / STATIC_DIR
    assert (collected / "admin" / "css" / "base.0123abcd.css").read_text() == "body {}\n"
    assert (collected / "staticfiles.json").is_file()
    assert (out / "app" / "src" / "manage.py").is_file()
    assert SECRET_VALUE.encode() not in _all_bytes(out)
    assert written.secrets == written.generated == ("DJANGO_SECRET_KEY",)
    assert written.front == ("/static/", "/media/")
    assert written.release_command == "python manage.py migrate --noinput"

    text = (out / cf.CONTAINERFILE).read_text()
    parsed = _parse(text)
    assert "DJANGO_SECRET_KEY" not in parsed.envs
    assert {k: v for k, v in parsed.envs.items() if k.startswith("DJANGO_")} == {
        "DJANGO_SETTINGS_MODULE": WRAPPER_MODULE,
        "DJANGO_ALLOWED_HOSTS": "*,localhost,127.0.0.1,[::1]",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "",
        "DJANGO_STATIC_ROOT": "/app/static/django-static",
        "DJANGO_MEDIA_ROOT": "/data/media",
        "DJANGO_MEDIA_URL": "/media/",
        "DJANGO_DATA_DIR": "/data/data",
    }
    assert _final(parsed, "WORKDIR") == ["/app/src"]
    # the wrapper reaches the venv after the wheels, compiled as a host compiles its venv
    runs = _instructions(parsed, "RUN")
    compiled = f"/app/venv/bin/python -m compileall -q {cf.django_wrapper_path(artifact.manifest)}"
    assert compiled in runs
    assert text.index("COPY app/ /app/") < text.index(compiled)
    # the app user owns its uploads and its data (SQLite files and their journal)
    assert "mkdir -p /data/data /data/media /data/var" in text
    assert "ln -s /data/data/db.sqlite3 /app/src/db.sqlite3" in text


def test_a_django_project_with_its_own_settings_gets_no_wrapper() -> None:
    spec = _spec(django={"settings": "mysite.settings", "wrap": False, "collectstatic": False})
    manifest = _manifest(tree=True)
    files = cf.context_files(spec, manifest, cf.ImageSettings())
    assert not [name for name in files if WRAPPER_MODULE in name]
    text = files[cf.CONTAINERFILE]
    envs = _parse(text).envs
    assert envs["DJANGO_SETTINGS_MODULE"] == "mysite.settings"
    assert "DJANGO_STATIC_ROOT" not in envs
    assert "compileall" not in text


def test_a_django_projects_env_gives_way_to_the_specs_and_names_its_domains() -> None:
    spec = _spec(
        django={"settings": "mysite.settings"},
        domains=["example.com"],
        env={"DJANGO_MEDIA_URL": "/uploads/"},
    )
    envs = _parse(cf.containerfile(spec, _manifest(), cf.ImageSettings())).envs
    assert envs["DJANGO_MEDIA_URL"] == "/uploads/"  # [env] over shipyard's, as on a host
    assert envs["DJANGO_ALLOWED_HOSTS"] == "example.com,localhost,127.0.0.1,[::1]"
    assert envs["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://example.com,http://example.com"


def test_the_image_and_the_kubernetes_export_agree_on_a_django_project() -> None:
    """The pods run the image: the same DJANGO_* variables, and the pod's nginx serves the
    collected files that the image holds at /app/static (its init container copies them)."""
    spec = load_spec(DJANGO_EXAMPLE)
    envs = _parse(cf.containerfile(spec, _manifest(tree=True), cf.ImageSettings())).envs
    config = k8s.config_env(spec, tree=True)
    assert {k: v for k, v in config.items() if k.startswith("DJANGO_")} == {
        k: v for k, v in envs.items() if k.startswith("DJANGO_")
    }
    pod = k8s.all_manifests(spec, "django-site:1", tree=True, has_secrets=True)
    init = pod["deployment-web.yaml"]["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == ["cp", "-R", f"{image.STATIC}/.", f"{nginx.STATIC}/"]
    served = {loc.prefix: loc.directory for loc in nginx.locations(spec)}
    copied = nginx.STATIC / PurePosixPath(envs["DJANGO_STATIC_ROOT"]).relative_to(image.STATIC)
    assert served["/static/"] == f"{copied}/"
    assert served["/media/"] == f"{envs['DJANGO_MEDIA_ROOT']}/"


def test_the_context_is_no_part_of_the_projects_next_release(tmp_path: Path) -> None:
    """Written inside the project (deploy/container by default), its wheels would change
    the release's source hash, and a source tree release would carry them."""
    artifact, store = _artifact(tmp_path / "built")
    project = tmp_path / "project"
    (project / "shop").mkdir(parents=True)
    (project / "shop" / "__init__.py").write_text("")
    before = source_files(project, [])
    write_context(_spec(), artifact, store, project / "deploy" / "container", cf.ImageSettings())
    assert source_files(project, []) == before == [Path("shop/__init__.py")]


def test_the_export_group_lists_the_container_command() -> None:
    done = CliRunner().invoke(cli, ["export", "--help"])
    assert done.exit_code == 0
    assert "container" in done.output
    done = CliRunner().invoke(cli, ["export", "container", "--help"])
    assert "--force" in done.output and "--base" in done.output and "--port" in done.output


def test_the_command_refuses_a_non_empty_directory_before_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """One paragraph, the usage exit code, and no build started (no artifact in the cache)."""
    (tmp_path / "shipyard.toml").write_text('name = "web"\nentry = "web:app"\n')
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    taken = tmp_path / "deploy" / "container"
    taken.mkdir(parents=True)
    (taken / "Containerfile").write_text("FROM scratch\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "container", str(tmp_path)])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert f"{taken} is not empty" in err and "--force" in err
    assert "Traceback" not in err
    assert not (tmp_path / "cache").exists()
    assert (taken / "Containerfile").read_text() == "FROM scratch\n"
