"""Django with no glue: detection, the spec's [django] table, the DJANGO_* variables, the
settings wrapper (imported by the real Django), and nginx's static and media locations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from fakes import FakeHost, Removed
from hostkit import LISTEN, make_spec, put_release

from shipyard.build.django_static import inputs_key
from shipyard.errors import CommandFailed, SpecError
from shipyard.host import render
from shipyard.host.artifact import Artifact, Manifest
from shipyard.host.djangoapp import allowed_hosts, django_environment, trusted_origins
from shipyard.host.filesteps import MakeDirs, SetMode
from shipyard.host.layout import HostLayout
from shipyard.host.python import PythonInfo
from shipyard.host.release import app_environment, install_steps, planned_static_dirs
from shipyard.host.render import NginxBinary
from shipyard.host.steps import Upload
from shipyard.host.switch import Switch
from shipyard.project.detect import detect
from shipyard.project.initfile import init_summary, render_spec_toml
from shipyard.spec.model import Spec, parse_spec

MANAGE = """\
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""
WSGI = (
    "import os\nfrom django.core.wsgi import get_wsgi_application\n"
    'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{settings}")\n'
    "application = get_wsgi_application()\n"
)
ASGI = WSGI.replace("wsgi", "asgi")
# startproject's settings, cut to what the wrapper touches
SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "django-insecure-startproject"
DEBUG = True
ALLOWED_HOSTS = []
INSTALLED_APPS = ["django.contrib.staticfiles"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"},
    "memory": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
STATIC_URL = "static/"
"""
NGINX = NginxBinary("/usr/sbin/nginx", "/etc/nginx/mime.types", "/etc/nginx/uwsgi_params")
PYTHON = PythonInfo("/usr/bin/python3", "3.11.2")


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _startproject(root: Path, settings: str = SETTINGS, module: str = "mysite.settings") -> Path:
    """The files `django-admin startproject mysite` makes, with `settings` as its settings."""
    return _write(
        root,
        {
            "manage.py": MANAGE.format(settings=module),
            "mysite/__init__.py": "",
            "mysite/settings.py": settings,
            "mysite/urls.py": "urlpatterns = []\n",
            "mysite/wsgi.py": WSGI.format(settings=module),
            "mysite/asgi.py": ASGI.format(settings=module),
            "requirements.txt": "django>=5.2,<6\n",
        },
    )


def _spec(**changes: object) -> Spec:
    raw: dict[str, object] = {
        "name": "mysite",
        "entry": "mysite.wsgi:application",
        "django": {"settings": "mysite.settings"},
    }
    return Spec.model_validate({**raw, **changes})


# --- detection and init ------------------------------------------------------------------


def test_startproject_is_served_by_wsgi_though_it_has_an_asgi_entry(tmp_path: Path) -> None:
    found = detect(_startproject(tmp_path / "mysite"))
    assert (found.entry, found.kind, found.server) == (
        "mysite.wsgi:application",
        "wsgi",
        "gunicorn",
    )
    assert found.alternatives == ["mysite.asgi:application"]
    assert found.django is not None and found.django.settings == "mysite.settings"
    assert found.django.settings_from == "manage.py"
    assert "DJANGO_SECRET_KEY" in found.secrets  # startproject's settings read no variable
    assert found.static == {}  # collected at build time instead
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), tmp_path / "shipyard.toml")
    assert spec.django is not None and spec.django.settings == "mysite.settings"
    assert spec.django.wrap and spec.django.collectstatic
    assert spec.secrets == {"DJANGO_SECRET_KEY": "generate"}
    assert spec.release == "python manage.py migrate --noinput"
    summary = "\n".join(init_summary(found))
    assert "django: settings mysite.settings (from manage.py)" in summary
    assert "served by WSGI (mysite.wsgi:application, on gunicorn)" in summary
    assert "collectstatic at build time" in summary and "shared/media" in summary


@pytest.mark.parametrize(
    ("settings", "why"),
    [
        (SETTINGS.replace('"django.contrib.staticfiles"', '"daphne", "channels"'), "'channels'"),
        (SETTINGS + 'ASGI_APPLICATION = "mysite.asgi.application"\n', "ASGI_APPLICATION"),
    ],
)
def test_a_project_that_needs_asgi_is_served_by_its_asgi_entry(
    tmp_path: Path, settings: str, why: str
) -> None:
    found = detect(_startproject(tmp_path / "mysite", settings))
    assert (found.entry, found.kind, found.server) == ("mysite.asgi:application", "asgi", "uvicorn")
    assert found.django is not None and why in found.django.served
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), tmp_path / "shipyard.toml")
    assert (spec.kind, spec.server.type) == ("asgi", "uvicorn")


def test_an_asgi_only_project_is_asgi(tmp_path: Path) -> None:
    project = _startproject(tmp_path / "mysite")
    (project / "mysite" / "wsgi.py").unlink()
    found = detect(project)
    assert (found.entry, found.kind) == ("mysite.asgi:application", "asgi")
    assert found.django is not None and "no WSGI entry" in found.django.served


def test_the_settings_module_is_read_from_manage_py(tmp_path: Path) -> None:
    project = _startproject(tmp_path / "site", module="config.settings.production")
    _write(project, {"config/__init__.py": "", "config/settings/__init__.py": ""})
    _write(project, {"config/settings/production.py": SETTINGS.replace("static/", "assets/")})
    found = detect(project)
    assert found.django is not None and found.django.settings == "config.settings.production"
    assert 'settings = "config.settings.production"' in render_spec_toml(found)


def test_djangos_own_test_runner_unless_pytest_django_is_set_up(tmp_path: Path) -> None:
    project = _startproject(tmp_path / "a")
    _write(
        project, {"notes/__init__.py": "", "notes/tests.py": "from django.test import TestCase\n"}
    )
    found = detect(project)
    assert (found.tests_enabled, found.tests_command, found.test_requirements) == (
        True,
        "python manage.py test",
        [],
    )
    spec = parse_spec(tomllib.loads(render_spec_toml(found)), project / "shipyard.toml")
    assert (spec.tests.command, spec.tests.requirements) == ("python manage.py test", [])
    _write(project, {"pytest.ini": "[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\n"})
    found = detect(project)
    assert (found.tests_command, found.test_requirements) == ("", ["pytest", "pytest-django"])


def test_a_startproject_without_tests_has_the_gate_off(tmp_path: Path) -> None:
    found = detect(_startproject(tmp_path / "mysite"))
    assert not found.tests_enabled
    assert "enabled = false" in render_spec_toml(found)


# --- the spec ----------------------------------------------------------------------------


def test_the_django_table_is_validated(tmp_path: Path) -> None:
    raw = {"name": "a", "entry": "a.wsgi:application", "django": {"settings": "a settings"}}
    with pytest.raises(SpecError, match=r"django\.settings: must be a dotted module name"):
        parse_spec(raw, tmp_path / "shipyard.toml")
    raw["django"] = {"settings": "a.settings", "media_url": "/static/"}
    raw["static"] = {"/static": "static"}
    with pytest.raises(SpecError, match="is also a \\[static\\] prefix"):
        parse_spec(raw, tmp_path / "shipyard.toml")
    raw["django"] = {"settings": "a.settings", "media_url": "/uploads"}
    spec = parse_spec(raw, tmp_path / "shipyard.toml")
    assert spec.django is not None and spec.django.media_url == "/uploads/"


# --- the DJANGO_* variables --------------------------------------------------------------


def test_hosts_and_origins_come_from_the_domains_and_listen() -> None:
    spec = _spec(domains=["shop.example.com", "*.example.org"], listen="127.0.0.1:8080")
    assert allowed_hosts(spec) == [
        "shop.example.com",
        ".example.org",
        "localhost",
        "127.0.0.1",
        "[::1]",
    ]
    assert trusted_origins(spec) == [
        "https://shop.example.com",
        "http://shop.example.com:8080",
        "https://*.example.org",
        "http://*.example.org:8080",
    ]
    assert trusted_origins(_spec(domains=["a.example"], listen="0.0.0.0:80")) == [
        "https://a.example",
        "http://a.example",
    ]
    # no domains: the address nginx listens on; every address answers any name
    assert allowed_hosts(_spec(listen="10.0.0.5:80"))[0] == "10.0.0.5"
    assert allowed_hosts(_spec(listen="0.0.0.0:80"))[0] == "*"


def test_the_environment_names_the_wrapper_and_the_kept_directories() -> None:
    app = HostLayout(Path("/srv/sy")).app("mysite")
    env = app_environment(_spec(env={"DJANGO_DEBUG": "1"}), app, "r1", {"DJANGO_SECRET_KEY": "s"})
    assert env["DJANGO_SETTINGS_MODULE"] == "shipyard_django_settings"
    assert env["DJANGO_STATIC_ROOT"] == "/srv/sy/mysite/releases/r1/static/django-static"
    assert env["DJANGO_MEDIA_ROOT"] == "/srv/sy/mysite/shared/media"
    assert env["DJANGO_MEDIA_URL"] == "/media/"
    assert env["DJANGO_DATA_DIR"] == "/srv/sy/mysite/shared/data"
    assert (env["DJANGO_DEBUG"], env["DJANGO_SECRET_KEY"]) == ("1", "s")  # the spec's, the config's
    unwrapped = _spec(django={"settings": "mysite.settings", "wrap": False})
    assert django_environment(unwrapped, app, "r1")["DJANGO_SETTINGS_MODULE"] == "mysite.settings"
    flask = Spec.model_validate({"name": "f", "entry": "f:app"})
    assert django_environment(flask, app, "r1") == {}


def test_a_release_gets_the_wrapper_in_its_venv_and_a_media_dir(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    manifest = Manifest("abc", "mysite", "t", "3.11.2", "s", "l", "", None)
    artifact = Artifact(tmp_path, manifest, reused=False)
    app = HostLayout(Path("/srv/sy")).app("mysite")
    steps = install_steps(_spec(), app, artifact, Path("/cache/wheels"), PYTHON)
    site = "/srv/sy/mysite/releases/abc/venv/lib/python3.11/site-packages"
    wrapper = next(
        s for s in steps if isinstance(s, Upload) and s.dest.name.startswith("shipyard_d")
    )
    assert wrapper.dest == PurePosixPath(f"{site}/shipyard_django_settings.py")
    assert b"from mysite.settings import *" in wrapper.content
    assert MakeDirs((app.media,)) in steps and SetMode(0o750, (app.media,)) in steps
    unwrapped = _spec(django={"settings": "mysite.settings", "wrap": False})
    steps = install_steps(unwrapped, app, artifact, Path("/cache/wheels"), PYTHON)
    assert not any(isinstance(s, Upload) and "django" in s.dest.name for s in steps)


# --- the wrapper, as Django reads it -----------------------------------------------------


def _settings_seen(project: Path, env: dict[str, str]) -> dict[str, object]:
    """The settings Django ends up with under the wrapper: run in a process of its own, as
    every process of a release imports it."""
    wrapper = project / "wrapper"
    wrapper.mkdir(exist_ok=True)
    (wrapper / "shipyard_django_settings.py").write_text(
        render.django_settings_module("mysite.settings")
    )
    show = (
        "import json; from django.conf import settings as s; print(json.dumps({k: getattr(s, k)"
        " for k in ('SECRET_KEY', 'DEBUG', 'ALLOWED_HOSTS', 'CSRF_TRUSTED_ORIGINS', 'STATIC_ROOT',"
        " 'MEDIA_ROOT', 'MEDIA_URL', 'STORAGES', 'SECURE_PROXY_SSL_HEADER')}"
        " | {'DATABASES': {a: str(d['NAME']) for a, d in s.DATABASES.items()}}, default=str))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    done = subprocess.run(
        [sys.executable, "-c", show],
        env={
            **clean,
            "PYTHONPATH": f"{wrapper}:{project}",
            "DJANGO_SETTINGS_MODULE": "shipyard_django_settings",
            "PYTHONDONTWRITEBYTECODE": "1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, object] = json.loads(done.stdout)
    return seen


def test_the_wrapper_gives_an_untouched_startproject_what_a_deploy_needs(tmp_path: Path) -> None:
    pytest.importorskip("django")  # the [test] extra has it
    project = _startproject(tmp_path / "mysite")
    seen = _settings_seen(
        project,
        {
            "DJANGO_SECRET_KEY": "from-the-config",
            "DJANGO_ALLOWED_HOSTS": "shop.example.com,localhost",
            "DJANGO_CSRF_TRUSTED_ORIGINS": "https://shop.example.com",
            "DJANGO_STATIC_ROOT": "/srv/r1/static/django-static",
            "DJANGO_MEDIA_ROOT": "/srv/shared/media",
            "DJANGO_MEDIA_URL": "/media/",
            "DJANGO_DATA_DIR": "/srv/shared/data",
        },
    )
    assert seen["SECRET_KEY"] == "from-the-config"
    assert seen["DEBUG"] is False
    assert seen["ALLOWED_HOSTS"] == ["shop.example.com", "localhost"]
    assert seen["CSRF_TRUSTED_ORIGINS"] == ["https://shop.example.com"]
    assert seen["STATIC_ROOT"] == "/srv/r1/static/django-static"
    assert (seen["MEDIA_ROOT"], seen["MEDIA_URL"]) == ("/srv/shared/media", "/media/")
    assert seen["DATABASES"] == {"default": "/srv/shared/data/db.sqlite3", "memory": ":memory:"}
    storages = seen["STORAGES"]
    assert isinstance(storages, dict)
    assert storages["staticfiles"]["BACKEND"].endswith("ManifestStaticFilesStorage")
    assert seen["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_the_wrapper_keeps_the_projects_own_choices(tmp_path: Path) -> None:
    pytest.importorskip("django")
    settings = SETTINGS.replace("ALLOWED_HOSTS = []", 'ALLOWED_HOSTS = ["own.example"]')
    settings += (
        'STORAGES = {"default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},'
        ' "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}\n'
    )
    project = _startproject(tmp_path / "mysite", settings)
    seen = _settings_seen(project, {"DJANGO_ALLOWED_HOSTS": "shop.example.com"})
    assert seen["ALLOWED_HOSTS"] == ["own.example", "shop.example.com"]
    assert seen["SECRET_KEY"] == "django-insecure-startproject"  # no variable: the project's
    storages = seen["STORAGES"]
    assert isinstance(storages, dict)
    assert storages["staticfiles"]["BACKEND"].endswith(".StaticFilesStorage")
    assert seen["DATABASES"] == {"default": str(project / "db.sqlite3"), "memory": ":memory:"}


# --- nginx -------------------------------------------------------------------------------


def test_hashed_names_are_cached_for_a_year_and_uploads_never_run_as_pages() -> None:
    app = HostLayout(Path("/srv/sy")).app("mysite")
    static = {
        "/static/": app.release("abc") / "static" / "django-static",
        "/media/": app.media,
    }
    text = render.site_conf(_spec(), app, "abc", "blue", static, "127.0.0.1:8080", NGINX)
    static_block = text[text.index("location /static/ {") : text.index("location /media/ {")]
    media_block = text[text.index("location /media/ {") : text.index("location / {")]
    assert "alias /srv/sy/mysite/releases/abc/static/django-static/;" in static_block
    assert 'location ~ "\\.[0-9a-f]{12}\\.[A-Za-z0-9]+$" {' in static_block
    assert "expires max;" in static_block and "immutable" in static_block
    assert "sandbox" not in static_block
    assert "alias /srv/sy/mysite/shared/media/;" in media_block
    assert "immutable" not in media_block
    assert "Content-Security-Policy \"default-src 'none'; sandbox\" always;" in media_block
    assert "X-Content-Type-Options nosniff always;" in media_block


# --- the build ---------------------------------------------------------------------------


def test_a_code_only_change_keeps_the_static_inputs_and_others_do_not(tmp_path: Path) -> None:
    """The collected set is reused, without running Django, only while what it can depend
    on is unchanged."""
    project = _startproject(tmp_path / "mysite")
    _write(project, {"notes/views.py": "X = 1\n", "notes/apps.py": "", "notes/static/a.css": ""})
    files = sorted(p.relative_to(project) for p in project.rglob("*") if p.is_file())
    spec = _spec()

    def key() -> str:
        return inputs_key(project, files, spec, "django==5.2\n", PYTHON)

    first = key()
    (project / "notes" / "views.py").write_text("X = 2\n")  # code only
    assert key() == first
    for changed in ("notes/static/a.css", "mysite/settings.py", "notes/apps.py"):
        before = key()
        (project / changed).write_text((project / changed).read_text() + "# changed\n")
        assert key() != before, changed
    assert inputs_key(project, files, spec, "django==5.2.1\n", PYTHON) != key()  # the pins
    media = _spec(django={"settings": "mysite.settings", "media_url": "/up/"})
    assert inputs_key(project, files, media, "django==5.2\n", PYTHON) != key()


def test_a_plan_shows_the_collected_files_where_the_serving_release_has_them(
    tmp_path: Path,
) -> None:
    """Before the build, STATIC_URL is known from the serving release's manifest."""
    app = HostLayout(tmp_path).app("mysite")
    spec = _spec(static={"/robots": "public"})
    assert planned_static_dirs(spec, app, "new", None) == {
        "/robots": app.release("new") / "static" / "0-public",
        "/media/": app.media,
    }
    live = app.release("old")
    live.mkdir(parents=True)
    (live / ".complete").touch()
    manifest = Manifest("old", "mysite", "t", "3.11.2", "s", "l", "", None)
    manifest = Manifest(**{**manifest.__dict__, "static": {"/assets/": "django-static"}})
    (live / "manifest.json").write_text(manifest.to_json())
    assert planned_static_dirs(spec, app, "new", "old")["/assets/"] == (
        app.release("new") / "static" / "django-static"
    )


# --- the switch --------------------------------------------------------------------------


def _django_switch(host: FakeHost, release_id: str, live: tuple[str, str] | None) -> Switch:
    app = host.layout.app("flaskr")
    for rid in ("r1", "r2"):
        if not app.release(rid).exists():
            put_release(app, rid, make_spec(**DJANGO_FIELDS), tree=True)
    return Switch(
        host.conn,
        host.supervisor,
        app,
        release_id,
        config={"DJANGO_SECRET_KEY": "s3"},
        listen=LISTEN,
        live=live,
        run_release_command=True,
        servers=host.servers,
        nginx_check_timeout=0.05,
    )


DJANGO_FIELDS: dict[str, object] = {
    "release": "python manage.py migrate --noinput",
    "django": {"settings": "mysite.settings"},
}


def test_a_django_release_migrates_as_its_server_starts_and_serves_after(tmp_path: Path) -> None:
    host = FakeHost(HostLayout(tmp_path))
    app = host.layout.app("flaskr")
    host.conn.answer((str(app.host.launcher),))
    _django_switch(host, "r1", None).run()
    assert host.conn.commands[0][-4:] == ("python", "manage.py", "migrate", "--noinput")
    assert host.nginx.release_served() == "r1"
    env = host.conn.text(app.env_file("blue"))
    assert "DJANGO_SETTINGS_MODULE=shipyard_django_settings\n" in env


def test_a_failed_migrate_stops_the_started_slot_and_switches_nothing(tmp_path: Path) -> None:
    host = FakeHost(HostLayout(tmp_path))
    app = host.layout.app("flaskr")
    host.conn.answer((str(app.host.launcher),))
    _django_switch(host, "r1", None).run()
    host.conn.answer((str(app.host.launcher),), exit_code=1, stdout="no such column: x")
    with pytest.raises(CommandFailed, match="the release command failed") as failed:
        _django_switch(host, "r2", ("r1", "blue")).stage()
    assert "no such column: x" in failed.value.message
    assert Removed(PurePosixPath(app.program_file("green"))) in host.conn.recorded
    assert "flaskr-web-green" not in host.supervisor.programs
    assert host.nginx.release_served() == "r1"
