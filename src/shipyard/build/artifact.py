"""The release artifact: the app (its wheel, or its source tree), pinned lock, wheel list,
static files and a manifest."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import parse_wheel_filename

from shipyard import __version__
from shipyard.build import django_static
from shipyard.build.appwheel import build_wheel
from shipyard.build.deps import Pin, compile_lock, parse_pins
from shipyard.build.platforms import Platform
from shipyard.build.source import (
    TREE_EXCLUDED,
    build_choice,
    copy_files,
    git_sha,
    hash_files,
    source_files,
    with_dirs,
)
from shipyard.build.static import static_files
from shipyard.build.wheels import compatible_tags, fill_store
from shipyard.errors import BuildError
from shipyard.host import render
from shipyard.host.artifact import (
    LOCK,
    MANIFEST,
    SPEC,
    TREE,
    Artifact,
    Manifest,
    WheelRef,
    load_artifact,
    wheel_store,
)
from shipyard.host.djangoapp import STATIC_DIR
from shipyard.host.python import PythonInfo, find_python
from shipyard.host.state import now
from shipyard.host.steps import Connection
from shipyard.host.wire import sha256_of
from shipyard.spec.buildmode import BuildChoice
from shipyard.spec.model import Spec

WHEEL = BuildChoice("wheel", "")


@dataclass(frozen=True)
class BuildInputs:
    """Everything the artifact id is a hash of."""

    source_sha256: str
    lock: str
    python: PythonInfo
    spec: Spec
    platform: Platform | None = None  # None: this machine's
    files: tuple[Path, ...] = ()  # the source files, relative to the project
    choice: BuildChoice = WHEEL  # the app as a wheel, or as its tree

    @property
    def foreign_platform(self) -> Platform | None:
        return self.platform if self.platform is not None and not self.platform.is_local else None

    @property
    def artifact_id(self) -> str:
        digest = hashlib.sha256()
        for part in (
            self.source_sha256,
            self.lock,
            self.python.minor,
            self.spec.model_dump_json(),
            __version__,
        ):
            digest.update(part.encode() + b"\0")
        if self.foreign_platform is not None:  # this machine's: the ids stay as they were
            digest.update(self.foreign_platform.key.encode())
        if self.choice.is_tree:  # likewise for wheels
            digest.update(b"tree\0")
        return digest.hexdigest()[:12]


def artifacts_dir(cache: Path) -> Path:
    return cache / "artifacts"


def tls_files_inside(project: Path, spec: Spec) -> list[str]:
    """The TLS files any target of the spec names that lie inside the project, relative."""
    found: list[str] = []
    for tls in (spec.tls, *(target.tls for target in spec.targets.values())):
        for name in (tls.certificate, tls.key, tls.ca_bundle) if tls else ():
            if not name:
                continue
            root = Path(os.path.normpath(project.absolute()))
            path = Path(os.path.normpath(root / Path(name).expanduser()))
            if path.is_relative_to(root) and path != root:
                found.append(path.relative_to(root).as_posix())
    return found


def gather_inputs(
    conn: Connection, project: Path, spec: Spec, cache: Path, platform: Platform | None = None
) -> BuildInputs:
    """What the artifact is built from; for hosts of another platform with `platform`."""
    python = find_python(spec.python)
    choice = build_choice(project, spec.build.mode)
    secret = tls_files_inside(project, spec)  # a key, certificates: sent to hosts apart
    if choice.is_tree:  # the app's data beside its code is no part of a release
        keep_out = [*spec.persistent, *spec.persistent_files, *secret]
        files = source_files(project, [*spec.build.exclude, *TREE_EXCLUDED], keep_out)
        files = with_dirs(project, files, list(spec.static.values()), keep_out)
    else:
        files = source_files(project, spec.build.exclude, secret)
    extra = render.server_packages(spec)
    lock = compile_lock(conn, project, spec.build.requirements, extra, python, cache, platform)
    source = hash_files(project, files)
    return BuildInputs(source, lock, python, spec, platform, tuple(files), choice)


def build(
    conn: Connection, project: Path, spec: Spec, cache: Path, inputs: BuildInputs
) -> Artifact:
    """Build the artifact for `inputs`, or return the one already built from the same inputs."""
    artifact_id = inputs.artifact_id
    final = artifacts_dir(cache) / artifact_id
    if (final / MANIFEST).is_file():
        return load_artifact(final)
    wheels = fill_wheels(conn, cache, inputs)
    artifacts_dir(cache).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{artifact_id}.", dir=artifacts_dir(cache)) as tmp:
        work = Path(tmp)
        app_wheel: WheelRef | None = None
        tree: dict[str, str] = {}
        if inputs.choice.is_tree:
            tree = copy_files(project, inputs.files, work / TREE)
        else:
            wheel = build_wheel(
                conn, project, inputs.files, work / "app", cache, inputs.python.executable
            )
            _check_installs_there(wheel, inputs)
            app_wheel = WheelRef(wheel.name, sha256_of(wheel))
        static = _collect_static(project, spec, work / "static")
        if spec.django is not None and spec.django.collectstatic:
            code = work / TREE if inputs.choice.is_tree else _import_root(project, spec)
            static.update(
                _collect_django(conn, project, spec, code, cache, inputs, work / "static")
            )
        (work / LOCK).write_text(inputs.lock)
        (work / SPEC).write_text(spec.model_dump_json(indent=2) + "\n")
        manifest = Manifest(
            id=artifact_id,
            app=spec.name,
            created=now(),
            python=inputs.python.version,
            source_sha256=inputs.source_sha256,
            lock_sha256=hashlib.sha256(inputs.lock.encode()).hexdigest(),
            git_sha=git_sha(project),
            app_wheel=app_wheel,
            wheels=sorted(
                (WheelRef(w.name, sha256_of(w)) for w in wheels.values()), key=lambda w: w.file
            ),
            static=static,
            platform=inputs.foreign_platform.describe() if inputs.foreign_platform else "",
            tree=tree,
        )
        (work / MANIFEST).write_text(manifest.to_json())
        work.chmod(0o755)
        try:
            work.rename(final)
        except OSError:
            if not (final / MANIFEST).is_file():  # lost a race to an identical build: fine
                raise
            return load_artifact(final)
    return Artifact(final, manifest, reused=False)


def _check_installs_there(app_wheel: Path, inputs: BuildInputs) -> None:
    """An app with compiled code builds a wheel for this machine only."""
    if inputs.foreign_platform is None:
        return
    wheel_tags = parse_wheel_filename(app_wheel.name)[3]
    if not wheel_tags & compatible_tags(inputs.python, inputs.platform):
        raise BuildError(
            f"the app's own wheel {app_wheel.name} is built for this machine and does not install "
            f"on {inputs.foreign_platform.describe()}.",
            hint="Build and deploy from a machine of that platform. Nothing was uploaded.",
        )


def fill_wheels(conn: Connection, cache: Path, inputs: BuildInputs) -> dict[Pin, Path]:
    """A wheel in the store for every pinned dependency (fetched once, then reused)."""
    pins = parse_pins(inputs.lock)
    return fill_store(conn, wheel_store(cache), pins, inputs.python, inputs.platform)


def _collect_static(project: Path, spec: Spec, out: Path) -> dict[str, str]:
    mapping = {}
    for index, (prefix, directory) in enumerate(sorted(spec.static.items())):
        source = project / directory
        if not source.is_dir():
            raise BuildError(
                f"static directory {directory!r} (for URL prefix {prefix}) is not in {project}.",
                hint="Fix `static` in the spec, or create the directory.",
            )
        name = f"{index}-{Path(directory).name}"
        (out / name).mkdir(parents=True)
        for rel in static_files(project, directory):
            target = out / name / rel.relative_to(directory)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(project / rel, target)
        mapping[prefix] = name
    return mapping


def _import_root(project: Path, spec: Spec) -> Path:
    return project / "src" if (project / "src" / spec.top_package).is_dir() else project


def _collect_django(
    conn: Connection,
    project: Path,
    spec: Spec,
    code: Path,
    cache: Path,
    inputs: BuildInputs,
    out: Path,
) -> dict[str, str]:
    """Django's collected static files in the artifact, served at STATIC_URL (when that is
    a path of this site, not another host's URL)."""
    key = django_static.inputs_key(project, inputs.files, spec, inputs.lock, inputs.python)
    collected = django_static.collect(conn, spec, code, cache, inputs.lock, inputs.python, key)
    if collected.directory is None:
        return {}
    django_static.link_into(collected.directory, out / STATIC_DIR)
    prefix = collected.static_url
    if not prefix.startswith("/"):
        return {}
    taken = {p.rstrip("/") for p in spec.static}
    if prefix.rstrip("/") in taken or not prefix.rstrip("/"):
        raise BuildError(
            f"Django's STATIC_URL {prefix!r} is also a prefix of [static] in the spec (or '/'): "
            "nginx would serve two directories there.",
            hint="Remove that [static] entry: shipyard collects Django's static files itself "
            "(or set django.collectstatic = false to serve your own).",
        )
    return {prefix: STATIC_DIR}


def prune_artifacts(cache: Path, keep: int) -> None:
    """Drop the oldest built artifacts beyond `keep` (hosts keep their own releases)."""
    built = sorted(artifacts_dir(cache).glob("*/" + MANIFEST), key=lambda p: p.stat().st_mtime)
    for manifest in built[:-keep] if keep else built:
        shutil.rmtree(manifest.parent, ignore_errors=True)
