"""What a Django release is given: its DJANGO_* variables, and the module that wraps the
project's settings to read them (docs/django.md). Pure: paths and strings only."""

from __future__ import annotations

from shipyard.host.layout import AppLayout
from shipyard.spec.model import Spec

WRAPPER_MODULE = "shipyard_django_settings"
STATIC_DIR = "django-static"  # collectstatic's output, in a release's static/
# Answers to this host itself: the health checks, `curl localhost` on the host.
LOCAL_NAMES = ("localhost", "127.0.0.1", "[::1]")
ANY_ADDRESS = ("0.0.0.0", "*", "[::]", "::", "")


def django_environment(spec: Spec, app: AppLayout, release_id: str) -> dict[str, str]:
    """The DJANGO_* variables of a release of `spec` (none for a project that is not
    Django's): the settings module, the host names and origins it answers, where its
    collected static files and uploads are, and the directory its SQLite files go in."""
    if spec.django is None:
        return {}
    settings = WRAPPER_MODULE if spec.django.wrap else spec.django.settings
    static = app.release(release_id) / "static" / STATIC_DIR
    return {
        "DJANGO_SETTINGS_MODULE": settings,
        "DJANGO_ALLOWED_HOSTS": ",".join(allowed_hosts(spec)),
        "DJANGO_CSRF_TRUSTED_ORIGINS": ",".join(trusted_origins(spec)),
        **({"DJANGO_STATIC_ROOT": str(static)} if spec.django.collectstatic else {}),
        "DJANGO_MEDIA_ROOT": str(app.media),
        "DJANGO_MEDIA_URL": spec.django.media_url,
        "DJANGO_DATA_DIR": str(app.data),
    }


def allowed_hosts(spec: Spec) -> list[str]:
    """ALLOWED_HOSTS: the spec's domains (a wildcard as Django writes it, '.example.com'),
    or with none the address nginx listens on; and this host's own names. nginx listening
    on every address with no domains answers any name, and so does the app then ('*')."""
    listen_host = spec.listen.rpartition(":")[0]
    if spec.domains:
        names = [_bare(d).replace("*.", ".", 1) for d in spec.domains]
    elif listen_host in ANY_ADDRESS:
        names = ["*"]
    else:
        names = [listen_host]
    return list(dict.fromkeys([*names, *LOCAL_NAMES]))


def trusted_origins(spec: Spec) -> list[str]:
    """CSRF_TRUSTED_ORIGINS: each domain over https (TLS ended in front of nginx, where the
    browser's Origin is not the request's scheme) and over http on nginx's port."""
    port = spec.listen.rpartition(":")[2]
    suffix = "" if port == "80" else f":{port}"
    origins: list[str] = []
    for domain in spec.domains:
        name = _bare(domain)
        origins += [f"https://{name}", f"http://{name}{suffix}"]
    return origins


def _bare(domain: str) -> str:
    return domain.rstrip(".")
