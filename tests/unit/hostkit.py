"""Releases on disk as the state machine reads them, for tests with the fake host."""

from __future__ import annotations

from typing import Any

from shipyard.host.artifact import Manifest, WheelRef
from shipyard.host.layout import AppLayout
from shipyard.host.release import COMPLETE
from shipyard.spec.model import Spec

LISTEN = "127.0.0.1:8080"


def make_spec(**fields: Any) -> Spec:
    raw: dict[str, Any] = {"name": "flaskr", "entry": "flaskr:create_app()"}
    raw["healthcheck"] = {"path": "/health", "timeout": 5}
    return Spec.model_validate({**raw, **fields})


def put_release(app: AppLayout, release_id: str, spec: Spec, *, tree: bool = False) -> None:
    """An installed release: its spec, its manifest and its completeness mark; with `tree`,
    of an app deployed as its source tree."""
    release = app.release(release_id)
    release.mkdir(parents=True)
    (release / "spec.json").write_text(spec.model_dump_json())
    manifest = Manifest(
        id=release_id,
        app=spec.name,
        created=f"2026-01-01T00:00:0{len(list(app.releases.iterdir()))}Z",
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="",
        app_wheel=None if tree else WheelRef(f"{spec.name}-1.0-py3-none-any.whl", "x"),
    )
    (release / "manifest.json").write_text(manifest.to_json())
    (release / COMPLETE).write_text("")
