"""End to end: Django with no glue. The example project, and one `django-admin startproject`
makes for real, deploy with real nginx, supervisord and gunicorn: static files collected at
build time and served by nginx (hashed names cached for a year), the admin, CSRF-protected
forms from the spec's domain, uploads and the SQLite database kept across deploys and
rollbacks."""

from __future__ import annotations

import http.client
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Deployment

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django-site"
DOMAIN = "django.test"
YEAR = 365 * 24 * 3600


@dataclass
class Browser:
    """Requests to nginx as a browser at `host` sends them: its cookies, an Origin."""

    port: int
    host: str
    cookies: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = {"Host": f"{self.host}:{self.port}", **(headers or {})}
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body or None, headers=sent)
            response = conn.getresponse()
            content = response.read()
        finally:
            conn.close()
        for line in response.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie(line)
            self.cookies.update({k: m.value for k, m in jar.items()})
        got = {k.lower(): v for k, v in response.getheaders()}
        got["cache-control"] = ", ".join(response.headers.get_all("Cache-Control") or [])
        return response.status, got, content

    def get(self, path: str) -> tuple[int, dict[str, str], str]:
        status, headers, content = self.request("GET", path)
        return status, headers, content.decode()

    def post_form(self, path: str, fields: dict[str, str], origin: str) -> int:
        body = "&".join(f"{k}={v}" for k, v in fields.items()).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Origin": origin}
        return self.request("POST", path, body, headers)[0]

    def upload(self, path: str, token: str, name: str, data: bytes, origin: str) -> tuple[int, str]:
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{token}\r\n".encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/plain\r\n\r\n".encode()
            + data
            + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Origin": origin}
        status, _, content = self.request("POST", path, b"".join(parts), headers)
        return status, content.decode()


def _token(page: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def _served_by_nginx_for_a_year(browser: Browser, path: str) -> str:
    """GET a hashed static file: nginx's own answer (Django serves no static file with DEBUG
    off), cached for a year; its body."""
    status, headers, body = browser.get(path)
    assert status == 200, (path, status)
    assert "immutable" in headers["cache-control"], headers
    max_age = re.search(r"max-age=(\d+)", headers["cache-control"])
    assert max_age and int(max_age.group(1)) >= YEAR, headers
    return body


def _run(project: Path, *command: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "shipyard.cli", "run", str(project), "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _set_greeting(project: Path, text: str) -> None:
    views = project / "notes" / "views.py"
    views.write_text(
        re.sub(r'^GREETING = "[^"]*"', f'GREETING = "{text}"', views.read_text(), flags=re.M)
    )


def test_the_django_example_keeps_its_data_and_uploads_across_deploys_and_rollbacks(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = deployment.project
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    spec = project / "shipyard.toml"
    spec.write_text(
        f'listen = "127.0.0.1:{deployment.port}"\ndomains = ["{DOMAIN}"]\n' + spec.read_text()
    )

    code, _, err = deployment.cli("deploy", str(project), capsys=capsys)
    assert code == 0, err
    assert "Ran 4 tests in" in err  # the test gate ran `manage.py test`
    browser = Browser(deployment.port, DOMAIN)
    status, headers, page = browser.get("/")
    assert status == 200 and "<h1>hello from django</h1>" in page
    first = headers["x-shipyard-release"]
    # a static file of the app, collected at build time under its hashed name
    css = re.search(r'href="(/static/notes/site\.[0-9a-f]{12}\.css)"', page)
    assert css, page
    assert "color: teal" in _served_by_nginx_for_a_year(browser, css.group(1))
    app = deployment.app("django-site")
    assert (app.release(first) / "static" / "django-static" / "staticfiles.json").is_file()
    assert not (project / "staticfiles").exists() and not (project / "db.sqlite3").exists()

    # the admin's login page, and its CSS from nginx
    status, _, login = browser.get("/admin/login/")
    assert status == 200 and "csrfmiddlewaretoken" in login
    admin_css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login)
    assert admin_css, login
    _served_by_nginx_for_a_year(browser, admin_css.group(1))

    # CSRF: a form posted from the domain behind TLS ended in front of nginx, and from the
    # domain on nginx's own port, passes; one from another origin does not
    token = _token(page)
    assert (
        browser.post_form(
            "/notes/", {"csrfmiddlewaretoken": token, "text": "one"}, origin=f"https://{DOMAIN}"
        )
        == 302
    )
    origin = f"http://{DOMAIN}:{deployment.port}"
    assert (
        browser.post_form("/notes/", {"csrfmiddlewaretoken": token, "text": "two"}, origin) == 302
    )
    evil = browser.post_form(
        "/notes/", {"csrfmiddlewaretoken": token, "text": "x"}, origin="https://evil.example"
    )
    assert evil == 403
    # and a row made from the command line, in the same database
    made = "from notes.models import Note; Note.objects.create(text='cli')"
    made += "; print(Note.objects.count())"
    assert _run(project, "python", "manage.py", "shell", "-c", made) == "3"
    assert (app.data / "db.sqlite3").is_file()

    # an upload, kept in shared/media and served by nginx as inert content
    status, url = browser.upload("/upload/", token, "hello.txt", b"uploaded bytes", origin)
    assert (status, url) == (201, "/media/uploads/hello.txt")
    status, headers, body = browser.get(url)
    assert (status, body) == (200, "uploaded bytes")
    assert "sandbox" in headers["content-security-policy"]
    assert (app.media / "uploads" / "hello.txt").read_bytes() == b"uploaded bytes"

    releases = [first]
    for greeting in ("second", "third"):
        _set_greeting(project, greeting)
        code, _, err = deployment.cli("deploy", str(project), "--skip-tests", capsys=capsys)
        assert code == 0, err
        status, headers, page = browser.get("/")
        assert status == 200 and f"<h1>{greeting}</h1>" in page
        releases.append(headers["x-shipyard-release"])
        assert browser.get("/notes/count")[2] == "3"
        assert browser.get(url)[2] == "uploaded bytes"
    assert len(set(releases)) == 3

    code, _, err = deployment.cli("rollback", str(project), capsys=capsys)
    assert code == 0, err
    status, headers, page = browser.get("/")
    assert "<h1>second</h1>" in page and headers["x-shipyard-release"] == releases[1]
    assert browser.get("/notes/count")[2] == "3"
    assert browser.get(url)[2] == "uploaded bytes"
    assert "<li>cli</li>" in page and "<li>one</li>" in page
    _served_by_nginx_for_a_year(browser, css.group(1))  # the same name in every release


def _startproject(deployment: Deployment) -> Path:
    """`django-admin startproject mysite`, for real, with only a requirements.txt added."""
    django_admin = Path(sys.executable).with_name("django-admin")
    assert django_admin.is_file(), "the [test] extra installs Django"
    parent = deployment.project.parent
    subprocess.run(
        [str(django_admin), "startproject", "mysite"], cwd=parent, check=True, timeout=60
    )
    project = parent / "mysite"
    (project / "requirements.txt").write_text(f"django=={version('django')}\n")
    return project


def test_a_project_startproject_made_deploys_with_no_glue(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = _startproject(deployment)

    code, _, err = deployment.cli("init", "--yes", str(project), capsys=capsys)
    assert code == 0, err
    assert "django: settings mysite.settings (from manage.py)" in err
    assert "served by WSGI (mysite.wsgi:application" in err
    spec = project / "shipyard.toml"
    spec.write_text(f'listen = "127.0.0.1:{deployment.port}"\n' + spec.read_text())

    code, _, err = deployment.cli("deploy", "--skip-tests", str(project), capsys=capsys)
    assert code == 0, err
    browser = Browser(deployment.port, "127.0.0.1")
    status, _, login = browser.get("/admin/login/")
    assert status == 200 and "Django administration" in login
    css = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login)
    assert css, login
    assert "body" in _served_by_nginx_for_a_year(browser, css.group(1))
    # migrate ran as the release command, into the kept database
    assert (deployment.app("mysite").data / "db.sqlite3").is_file()


def test_settings_that_need_a_variable_at_build_time_say_so_and_deploy_nothing(
    bare_deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment = bare_deployment
    project = _startproject(deployment)
    settings = project / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + 'import os\nREDIS = os.environ["REDIS_URL"]\n')
    code, _, err = deployment.cli("init", "--yes", str(project), capsys=capsys)
    assert code == 0, err
    spec = project / "shipyard.toml"
    spec.write_text(f'listen = "127.0.0.1:{deployment.port}"\n' + spec.read_text())

    code, _, err = deployment.cli("deploy", "--skip-tests", str(project), capsys=capsys)
    assert code == 1, err  # a clear error, not an internal one
    assert "collectstatic could not run at build time" in err and "KeyError: 'REDIS_URL'" in err
    assert "put what the settings need at import time in [env]" in err
    assert not deployment.app("mysite").releases.exists()

    spec.write_text(spec.read_text().replace("[env]\n", '[env]\nREDIS_URL = "redis://x"\n'))
    code, _, err = deployment.cli("deploy", "--skip-tests", str(project), capsys=capsys)
    assert code == 0, err
    assert deployment.get("/admin/login/")[0] == 200
