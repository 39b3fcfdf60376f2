"""Where things are in the app's container image, which `shipyard export container` builds
and `shipyard export kubernetes` runs: the release laid out as on a host, at one fixed place,
and a Django project's variables that point there. Pure: paths and strings only."""

from __future__ import annotations

from pathlib import PurePosixPath

from shipyard.host.artifact import TREE
from shipyard.host.djangoapp import LOCAL_NAMES, STATIC_DIR, WRAPPER_MODULE, allowed_hosts
from shipyard.spec.model import Spec

APP_DIR = PurePosixPath("/app")  # the release: the app, its server's config files, static/
VENV = APP_DIR / "venv"
STATIC = APP_DIR / "static"  # the release's static files, one directory per URL prefix
DJANGO_STATIC = STATIC / STATIC_DIR  # a Django project's collected files
DATA = PurePosixPath("/data")  # what outlives a pod (a volume): shared/ on a host
TMP = PurePosixPath("/tmp")
PORT = 8000
UID = 10001  # the image's user: not root, and no user of the node's
DJANGO_MEDIA = DATA / "media"  # a Django project's uploads (shared/media on a host)
DJANGO_DATA = DATA / "data"  # where its settings put SQLite files (shared/data on a host)


def workdir(tree: bool) -> PurePosixPath:
    """Where the app's processes run: its copy of the source tree, or the release itself."""
    return APP_DIR / TREE if tree else APP_DIR


def instance_dir() -> PurePosixPath:
    """The venv's var/, where Flask keeps an installed package's instance folder."""
    return VENV / "var"


def site_packages(python_minor: str) -> PurePosixPath:
    """The venv's site-packages, for the Python of the release's wheels ('3.11')."""
    return VENV / "lib" / f"python{python_minor}" / "site-packages"


def django_env(spec: Spec) -> dict[str, str]:
    """A Django project's DJANGO_* variables (host/djangoapp.py), with the image's paths:
    none is a secret (DJANGO_SECRET_KEY comes when the container starts). In front of the
    image, an Ingress or a proxy answers `domains` over https; health checks and probes ask
    for localhost."""
    if spec.django is None:
        return {}
    hosts = allowed_hosts(spec) if spec.domains else ["*", *LOCAL_NAMES]
    origins = [f"{scheme}://{d.rstrip('.')}" for d in spec.domains for scheme in ("https", "http")]
    return {
        "DJANGO_SETTINGS_MODULE": WRAPPER_MODULE if spec.django.wrap else spec.django.settings,
        "DJANGO_ALLOWED_HOSTS": ",".join(hosts),
        "DJANGO_CSRF_TRUSTED_ORIGINS": ",".join(origins),
        **({"DJANGO_STATIC_ROOT": str(DJANGO_STATIC)} if spec.django.collectstatic else {}),
        "DJANGO_MEDIA_ROOT": str(DJANGO_MEDIA),
        "DJANGO_MEDIA_URL": spec.django.media_url,
        "DJANGO_DATA_DIR": str(DJANGO_DATA),
    }
