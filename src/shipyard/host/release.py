"""Installing a release on a host: the steps as data, and the app's environment.

A release's venv holds the app alone. Its dependencies are a layer: a venv of their own under
`layers/<id>`, made once per set of dependency wheels and Python, that every release with that
set shares through a .pth file in its site-packages. The layer's console scripts are written
into the release's bin with the release's Python as their shebang, so `gunicorn` or `flask`
there runs the release's Python, which sees the app first and the layer after it. A code-only
release so makes a near-empty venv instead of re-linking every file of its dependencies: a
few files, not hundreds of directories and links.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath

from shipyard.errors import ShipyardError
from shipyard.host import render
from shipyard.host.artifact import MANIFEST, SPEC, Artifact, Manifest
from shipyard.host.bytecode import CompileTree, CompileVenv
from shipyard.host.djangoapp import STATIC_DIR, WRAPPER_MODULE, django_environment
from shipyard.host.filesteps import (
    Chown,
    FileStep,
    LinkTree,
    MakeDirs,
    MakeFiles,
    RemoveTree,
    SetMode,
)
from shipyard.host.layout import AppLayout
from shipyard.host.nginx_workers import socket_mode
from shipyard.host.python import PythonInfo
from shipyard.host.steps import Step, Symlink, Upload
from shipyard.host.venvs import InstallWheel, LinkScripts, MakeVenv, site_packages_in
from shipyard.spec.model import Spec

COMPLETE = ".complete"
# What installs a release: steps any connection runs, and those the installer runs in its own
# process (filesteps.py, venvs.py, bytecode.py); each runs itself with `run(InstallContext)`.
InstallStep = Step | FileStep | MakeVenv | InstallWheel | LinkScripts | CompileVenv | CompileTree
LAYER_FILE = "layer"  # in a release: the id of the dependency layer its venv uses
LAYER_PTH = "_shipyard_layer.pth"


def is_installed(app: AppLayout, release_id: str) -> bool:
    return (app.release(release_id) / COMPLETE).is_file()


def installed_releases(app: AppLayout) -> list[str]:
    if not app.releases.is_dir():
        return []
    return sorted(p.parent.name for p in app.releases.glob(f"*/{COMPLETE}"))


def release_spec(app: AppLayout, release_id: str) -> Spec:
    """The spec a release was built with: rollbacks and restarts run it as it was."""
    return Spec.model_validate_json((app.release(release_id) / SPEC).read_text())


def release_manifest(app: AppLayout, release_id: str) -> Manifest:
    return Manifest.from_json((app.release(release_id) / MANIFEST).read_text())


def layer_id(artifact: Artifact, python: PythonInfo) -> str:
    """Which layer a release needs: its dependency wheels (by content) and its Python."""
    wheels = sorted((w.file, w.sha256) for w in artifact.manifest.wheels)
    text = json.dumps([python.executable, python.version, wheels])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def layer_is_complete(app: AppLayout, layer: str) -> bool:
    return (app.layer(layer) / COMPLETE).is_file()


def release_layer(app: AppLayout, release_id: str) -> str | None:
    """The layer an installed release uses; None for a release with its dependencies in its
    own venv (installed before layers)."""
    try:
        return (app.release(release_id) / LAYER_FILE).read_text().strip() or None
    except OSError:
        return None


def layer_steps(
    app: AppLayout, artifact: Artifact, wheel_store: Path, python: PythonInfo
) -> list[InstallStep]:
    """Make the dependency layer from the wheel store (the release's pinned wheels, each
    checked by sha256 when it arrived); compiled, then marked complete."""
    layer = app.layer(layer_id(artifact, python))
    wheels = tuple(wheel_store / w.file for w in artifact.manifest.wheels)
    steps: list[InstallStep] = [
        RemoveTree(layer),
        MakeVenv(python, layer),
        InstallWheel(wheels, layer, python.minor, "the dependency wheel"),
    ]
    steps += [CompileVenv(layer), Upload(b"", _posix(layer / COMPLETE))]
    return steps


def install_steps(
    spec: Spec,
    app: AppLayout,
    artifact: Artifact,
    wheel_store: Path,
    python: PythonInfo,
    run_as: str | None = None,
) -> list[InstallStep]:
    """Unpack the artifact into releases/<id>, make its venv (the app's wheel, or nothing
    for a source tree, on top of its layer), link persistent data. The layer must be
    complete (layer_steps).

    The venv is made in place (a venv cannot be moved), so completeness is a marker file
    written last; an incomplete directory is removed and redone.
    """
    rid = artifact.id
    release = app.release(rid)
    venv = app.venv(rid)
    manifest = artifact.manifest
    layer_name = layer_id(artifact, python)
    layer = app.layer(layer_name)
    site = site_packages_in(venv, python.minor)
    # addsitedir, not a bare path: the layer's own .pth files are processed too
    pth = f"import site; site.addsitedir({str(layer / site.relative_to(venv))!r})\n"
    workdir = app.workdir(rid, manifest.is_tree)
    instance = tree_instance(spec, app) if manifest.is_tree else None
    steps: list[InstallStep] = [
        RemoveTree(release),
        MakeDirs(
            (release, app.var, app.data, app.logs, app.run, *([instance] if instance else []))
        ),
        LinkTree(_artifact_entries(artifact), release),
        *(_owned_by(run_as, app) if run_as else []),
        *_private(app, run_as),
        MakeVenv(python, venv),
        Upload(pth.encode(), _posix(site / LAYER_PTH)),
    ]
    if manifest.app_wheel is not None:  # a tree needs none: it is on PYTHONPATH as it is
        wheel = release / "app" / manifest.app_wheel.file
        steps.append(InstallWheel((wheel,), venv, python.minor))
    steps += [
        LinkScripts(layer / "bin", venv / "bin"),
        Upload(f"{layer_name}\n".encode(), _posix(release / LAYER_FILE)),
        # Flask keeps its instance folder at <venv>/var/<name>-instance: keep it across releases
        Symlink(str(app.var), _posix(venv / "var")),
    ]
    if instance is not None:  # and an app run from its tree beside its code: the same place
        steps.append(Symlink(str(instance), _posix(workdir / "instance")))
    steps += _persistent_links(spec, app, workdir, run_as)
    steps += _django_steps(spec, app, site, run_as)
    for name, content in render.server_conf_files(spec, app, rid, socket_mode()).items():
        steps.append(Upload(content.encode(), _posix(release / name)))
    # Compiled now, not by the app at each start: the app user cannot write into its release.
    # Bytecode of unchanged files is linked from the previous release first (bytecode.py).
    steps.append(CompileVenv(venv))
    if manifest.is_tree:
        steps.append(CompileTree(app.workdir(rid, tree=True), venv))
    steps.append(Upload(b"", _posix(release / COMPLETE)))
    return steps


def tree_instance(spec: Spec, app: AppLayout) -> Path | None:
    """Where a source tree's `instance/` is kept: where Flask keeps an installed app's
    instance folder (shared/var/<module>-instance), so it persists without configuration
    and is the same data in either mode; None when the spec makes it persistent itself."""
    if Path("instance") in {Path(p) for p in (*spec.persistent, *spec.persistent_files)}:
        return None
    return app.var / f"{spec.module}-instance"


def _persistent_links(
    spec: Spec, app: AppLayout, workdir: Path, run_as: str | None
) -> list[InstallStep]:
    """Each persistent directory and file, where the app looks for it (beside its code, in
    its working directory), is a link to its place in shared/data. A file's link may dangle
    until the app makes it: SQLite follows the link, and keeps its journal beside the file."""
    steps: list[InstallStep] = []
    for path, is_dir in [(d, True) for d in spec.persistent] + [
        (f, False) for f in spec.persistent_files
    ]:
        link, kept = workdir / path, app.data / path
        where = kept if is_dir else kept.parent
        steps.append(MakeDirs((where, link.parent)))
        if run_as:
            steps.append(Chown(run_as, (where,)))
        steps.append(Symlink(str(kept), _posix(link)))
    return steps


def _django_steps(spec: Spec, app: AppLayout, site: Path, run_as: str | None) -> list[InstallStep]:
    """A Django release's settings module (in its venv, so every process of the release
    imports it) and its uploads' directory, which nginx's workers read (shared/media)."""
    if spec.django is None:
        return []
    steps: list[InstallStep] = [MakeDirs((app.media,))]
    if run_as:
        steps.append(Chown(run_as, (app.media,)))
    steps.append(SetMode(0o750, (app.media,)))
    if spec.django.wrap:
        wrapper = render.django_settings_module(spec.django.settings)
        steps.append(Upload(wrapper.encode(), _posix(site / f"{WRAPPER_MODULE}.py")))
    return steps


def _owned_by(run_as: str, app: AppLayout) -> list[InstallStep]:
    """What the app writes belongs to the app user; its code stays root's, read-only to it."""
    return [
        Chown(run_as, (app.var, app.run), recursive=True),
        Chown(run_as, (app.data, app.logs)),
    ]


def _private(app: AppLayout, run_as: str | None) -> list[InstallStep]:
    """Nothing of shared/ is open to other local users. nginx's workers (the app's group, or
    the app's own user) only pass through shared/ and run/ to the socket; data, the
    instance folder and logs are the app user's alone (nginx's master, root or this user,
    opens its logs)."""
    return [
        SetMode(0o750, (app.shared,), group_of=run_as),
        SetMode(0o750, (app.run,)),
        SetMode(0o700, (app.data, app.var, app.logs)),
        # nginx -t creates them before its master would, with this process's umask
        MakeFiles(0o640, (app.access_log, app.error_log)),
    ]


def _artifact_entries(artifact: Artifact) -> tuple[Path, ...]:
    return tuple(sorted(artifact.path.iterdir()))


def static_dirs(app: AppLayout, release_id: str) -> dict[str, Path]:
    """What nginx serves itself, by URL prefix: the release's static files, and a Django
    project's uploads (kept across releases)."""
    manifest = release_manifest(app, release_id)
    found = {p: app.release(release_id) / "static" / d for p, d in manifest.static.items()}
    spec = release_spec(app, release_id)
    if spec.django is not None:
        found[spec.django.media_url] = app.media
    return found


def planned_static_dirs(
    spec: Spec, app: AppLayout, release_id: str, live: str | None
) -> dict[str, Path]:
    """What static_dirs() will be once `release_id` of `spec` is installed, for a plan made
    before its build: the spec's dirs, a Django project's uploads, and its collected files
    at the prefix the serving release has them (STATIC_URL, known once built)."""
    if is_installed(app, release_id):
        return static_dirs(app, release_id)
    static = app.release(release_id) / "static"
    found = {
        p: static / f"{i}-{Path(d).name}" for i, (p, d) in enumerate(sorted(spec.static.items()))
    }
    if spec.django is not None:
        served = release_manifest(app, live).static if live and is_installed(app, live) else {}
        found |= {p: static / d for p, d in served.items() if d == STATIC_DIR}
        found[spec.django.media_url] = app.media
    return found


def release_workdir(app: AppLayout, release_id: str) -> Path:
    """Where an installed release runs (AppLayout.workdir), as its manifest says."""
    return app.workdir(release_id, release_manifest(app, release_id).is_tree)


def app_environment(
    spec: Spec, app: AppLayout, release_id: str, config: dict[str, str], tree: bool = False
) -> dict[str, str]:
    """What the app's processes, its release command and `shipyard run` see; a source
    tree's release has its tree on the path."""
    venv = app.venv(release_id)
    env = {
        "FLASK_APP": spec.entry,
        **django_environment(spec, app, release_id),
        **spec.env,
        **config,
    }
    env.update(
        PATH=f"{venv}/bin:/usr/local/bin:/usr/bin:/bin",
        VIRTUAL_ENV=str(venv),
        PYTHONPATH=str(app.workdir(release_id, tree)),
        PYTHONUNBUFFERED="1",
        SHIPYARD_APP=spec.name,
        SHIPYARD_RELEASE=release_id,
    )
    return env


def load_config(app: AppLayout) -> dict[str, str]:
    try:
        raw = json.loads(app.config_file.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as err:  # not JSON, or cut short (a full disk, say)
        raise _corrupt_config(app, str(err)) from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise _corrupt_config(app, "it does not hold an object of strings")
    return {str(k): v for k, v in raw.items()}


def _corrupt_config(app: AppLayout, why: str) -> ShipyardError:
    return ShipyardError(
        f"{app.config_file} is corrupt ({why}); it holds the app's variables set with "
        "`shipyard config set`.",
        hint="Restore it from a backup; or remove it and set the variables again with "
        "`shipyard config set KEY=VALUE` (secrets listed under [secrets] are generated anew).",
    )


def config_upload(app: AppLayout, config: dict[str, str]) -> Upload:
    content = json.dumps(dict(sorted(config.items())), indent=2) + "\n"
    return Upload(content.encode(), _posix(app.config_file), mode=0o600)


def remove_release(app: AppLayout, release_id: str) -> None:
    shutil.rmtree(app.release(release_id), ignore_errors=True)


def remove_layer(app: AppLayout, layer: str) -> None:
    shutil.rmtree(app.layer(layer), ignore_errors=True)


def prune_layers(app: AppLayout) -> list[str]:
    """Remove the layers no release on disk uses; which."""
    if not app.layers.is_dir():
        return []
    used = {release_layer(app, rid) for rid in _release_dirs(app)}
    unused = sorted(p.name for p in app.layers.iterdir() if p.name not in used)
    for name in unused:
        remove_layer(app, name)
    return unused


def _release_dirs(app: AppLayout) -> list[str]:
    return [p.name for p in app.releases.iterdir()] if app.releases.is_dir() else []


def _posix(path: Path) -> PurePosixPath:
    return PurePosixPath(path)
