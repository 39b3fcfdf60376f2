"""The container image of a release: its Containerfile and the text files of its build
context, computed from the spec and the artifact's manifest (pure: the writer in
container.py lays them out)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import jinja2
from packaging.utils import parse_wheel_filename

from shipyard.host import render
from shipyard.host.artifact import Manifest
from shipyard.host.djangoapp import STATIC_DIR, WRAPPER_MODULE
from shipyard.spec.model import ServerType, Spec
from shipyard.targets.export import image

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("shipyard.targets.export", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # a Containerfile, not HTML
)

# Where things are in the image (image.py, which the Kubernetes export runs too): the release
# as a host has it (its venv inside it), and the app's data, which outlives the container.
RELEASE_DIR = image.APP_DIR
VENV = image.VENV
TREE_DIR = image.workdir(tree=True)  # a source-tree release's files
DATA = image.DATA
APP_USER = "app"
APP_UID = image.UID  # numeric, so that Kubernetes' runAsNonRoot can check it
HEALTHCHECK_SCRIPT = "shipyard_healthcheck.py"
# In a build context: the wheels, the pip requirements that pin them, the release's files.
WHEELS = "wheels"
REQUIREMENTS = "requirements.txt"
APP_FILES = "app"
CONTAINERFILE = "Containerfile"
# One container runs this many server workers when the spec sets none: an image is scaled
# by running more containers, not by the cores of the machine that exported it.
CONTAINER_WORKERS = 2
DEFAULT_PORT = image.PORT


@dataclass(frozen=True)
class ImageSettings:
    """What the export command adds to the spec: the server's port, the base image."""

    port: int = DEFAULT_PORT
    base: str = ""  # empty: the official Python image of the wheels' Python (default_base)


def default_base(python_minor: str) -> str:
    """The Debian 12 image of the Python the wheels are built for."""
    return f"docker.io/library/python:{python_minor}-slim-bookworm"


def python_minor(manifest: Manifest) -> str:
    """'3.11' of the artifact's '3.11.2'."""
    return ".".join(manifest.python.split(".")[:2])


def server_command(spec: Spec, port: int) -> tuple[str, ...]:
    """The app server's command in the image, on TCP: the same as a host's, but its bind.
    gunicorn and uWSGI read their worker count from their config file; uvicorn and granian
    take it on their command line."""
    server = spec.server.type
    reads_config = server.on_gunicorn or server is ServerType.UWSGI
    workers = None if reads_config else spec.server.workers or CONTAINER_WORKERS
    bind = render.TcpAddress("0.0.0.0", port)
    return render.server_command(spec, _p(VENV), _p(RELEASE_DIR), bind, workers)


def built_here(manifest: Manifest) -> list[str]:
    """The release's wheels built on the exporting machine (from an sdist, with a plain
    linux_<arch> tag), which link against its shared libraries, not manylinux's few."""
    return [
        ref.file
        for ref in manifest.wheels
        if any(tag.platform.startswith("linux_") for tag in parse_wheel_filename(ref.file)[3])
    ]


def requirements_txt(manifest: Manifest) -> str:
    """pip's hash-checking requirements: exactly the artifact's wheels, each by its sha256."""
    lines = ["# Managed by shipyard: the release's wheels, each checked by its sha256."]
    refs = [*manifest.wheels, *([manifest.app_wheel] if manifest.app_wheel else [])]
    for ref in refs:
        lines.append(f"/tmp/shipyard/{WHEELS}/{ref.file} --hash=sha256:{ref.sha256}")
    return "\n".join(lines) + "\n"


def healthcheck_script(spec: Spec, port: int) -> str:
    """The HEALTHCHECK's check: the spec's path, its status rule (no curl in the image)."""
    check = spec.healthcheck
    return _ENV.get_template("healthcheck.py.j2").render(
        port=port,
        path=check.request_path,
        statuses=json.dumps(list(check.healthy_statuses or [])),
        timeout=min(check.timeout, 5),
    )


def environment(spec: Spec, manifest: Manifest) -> dict[str, str]:
    """What the app's processes see, as on a host (release.app_environment), but secrets:
    those come when the container starts. A Django project's variables point into the
    image and its data volume."""
    workdir = TREE_DIR if manifest.is_tree else RELEASE_DIR
    env = {"FLASK_APP": spec.entry, **image.django_env(spec), **spec.env}
    env.update(
        PATH=f"{VENV}/bin:/usr/local/bin:/usr/bin:/bin",
        VIRTUAL_ENV=str(VENV),
        PYTHONPATH=str(workdir),
        PYTHONUNBUFFERED="1",
        SHIPYARD_APP=spec.name,
        SHIPYARD_RELEASE=manifest.id,
        HOME=str(DATA),
    )
    return env


def context_files(spec: Spec, manifest: Manifest, settings: ImageSettings) -> dict[str, str]:
    """Every text file of the build context, by its path in it; the wheels (and a source
    tree's files) are copied from the artifact beside them."""
    files = {
        CONTAINERFILE: containerfile(spec, manifest, settings),
        REQUIREMENTS: requirements_txt(manifest),
        f"{APP_FILES}/{HEALTHCHECK_SCRIPT}": healthcheck_script(spec, settings.port),
    }
    server = render.server_files(
        spec, manifest.id, _p(RELEASE_DIR), _p(VENV), workers=CONTAINER_WORKERS
    )
    # not the launcher of uvicorn and granian: a host's binds its unix socket; here they bind
    # their port themselves
    server.pop(render.SERVER_LAUNCHER, None)
    files |= {f"{APP_FILES}/{name}": text for name, text in server.items()}
    if spec.django is not None and spec.django.wrap:
        wrapper = django_wrapper_path(manifest).relative_to(RELEASE_DIR)
        files[f"{APP_FILES}/{wrapper}"] = render.django_settings_module(spec.django.settings)
    return files


def django_wrapper_path(manifest: Manifest) -> PurePosixPath:
    """Where a Django release's settings wrapper goes: its venv's site-packages, as on a
    host, so that every process of the image imports it."""
    return image.site_packages(python_minor(manifest)) / f"{WRAPPER_MODULE}.py"


def django_static_urls(spec: Spec, manifest: Manifest) -> list[str]:
    """The URL prefixes of a Django project's collected files (STATIC_URL, as the build
    found it), which Django does not serve with DEBUG off."""
    if spec.django is None:
        return []
    return sorted(prefix for prefix, name in manifest.static.items() if name == STATIC_DIR)


def containerfile(spec: Spec, manifest: Manifest, settings: ImageSettings) -> str:
    """The Containerfile: a stage that installs the wheels, then the image itself."""
    minor = python_minor(manifest)
    workdir = TREE_DIR if manifest.is_tree else RELEASE_DIR
    return _ENV.get_template("Containerfile.j2").render(
        app=spec.name,
        release=manifest.id,
        base=settings.base or default_base(minor),
        python_check=_python_check(minor),
        venv=VENV,
        data=DATA,
        release_dir=RELEASE_DIR,
        compiled=_compiled(spec, manifest),
        links=_persistent_links(spec, workdir),
        labels={
            "org.opencontainers.image.title": spec.name,
            "org.opencontainers.image.version": manifest.version,
            "org.opencontainers.image.revision": manifest.git_sha,
            "io.shipyard.release": manifest.id,
        },
        quote=dockerfile_quote,
        uid=APP_UID,
        user=APP_USER,
        data_dirs=_data_dirs(spec),
        env=sorted(environment(spec, manifest).items()),
        workdir=workdir,
        port=settings.port,
        start_period=int(spec.healthcheck.timeout),
        healthcheck=json.dumps([f"{VENV}/bin/python", "-I", f"{RELEASE_DIR}/{HEALTHCHECK_SCRIPT}"]),
        server=spec.server.type.value,
        stop_signal=render.stop_signal(spec),
        graceful_timeout=spec.server.graceful_timeout,
        command=json.dumps(list(server_command(spec, settings.port))),
        server_check=f"{server_command(spec, settings.port)[0]} --version",
    )


def dockerfile_quote(value: str) -> str:
    """A value for ENV or LABEL, double-quoted: read back as it is (no variable expanded)."""
    if "\n" in value or "\r" in value:
        raise ValueError("a line break cannot be written into a Containerfile's ENV or LABEL")
    return '"' + re.sub(r'(["\\$])', r"\\\1", value) + '"'


def _python_check(minor: str) -> str:
    """A command that stops the build on a base image of another Python than the wheels'."""
    major, _, second = minor.partition(".")
    code = (
        f"import sys; sys.exit(sys.version_info[:2] != ({major}, {second}) and "
        f"'the base image has Python %d.%d; the release wheels are for Python {minor}: "
        f"build with --build-arg BASE=<an image with Python {minor}>' % sys.version_info[:2])"
    )
    return f"python3 -c {json.dumps(code)}"


def _persistent_links(
    spec: Spec, workdir: PurePosixPath
) -> list[tuple[PurePosixPath, PurePosixPath]]:
    """Each persistent directory and file, where the app looks for it (its working
    directory), is a link into the data volume, as on a host (into shared/data)."""
    paths = [*spec.persistent, *spec.persistent_files]
    return [(workdir / path, DATA / "data" / path) for path in paths]


def _compiled(spec: Spec, manifest: Manifest) -> list[PurePosixPath]:
    """The modules of the context that go into the venv, compiled at build time as a host
    compiles a release's venv: the app user cannot write bytecode beside them."""
    if spec.django is not None and spec.django.wrap:
        return [django_wrapper_path(manifest)]
    return []


def _data_dirs(spec: Spec) -> list[str]:
    """The directories of the data volume the app user owns: the instance folder's (the
    venv's var, as on a host), each persistent directory, each persistent file's parent,
    and a Django project's uploads and data (its SQLite files)."""
    kept = DATA / "data"
    dirs = {DATA / "var", kept}
    if spec.django is not None:
        dirs |= {image.DJANGO_MEDIA, image.DJANGO_DATA}
    dirs |= {kept / path for path in spec.persistent}
    dirs |= {(kept / path).parent for path in spec.persistent_files}
    return sorted(str(d) for d in dirs)


def _p(path: PurePosixPath) -> Path:  # render's functions take Path: the same string
    return Path(str(path))
