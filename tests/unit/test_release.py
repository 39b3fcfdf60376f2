"""Install steps as data, and the environment a release runs with."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from shipyard.build.artifact import Artifact, Manifest, WheelRef
from shipyard.hosts.base import Command, Symlink, Upload
from shipyard.layout import HostLayout
from shipyard.release import app_environment, install_steps
from shipyard.spec import Spec


def _artifact(tmp_path: Path) -> Artifact:
    (tmp_path / "app").mkdir()
    (tmp_path / "manifest.json").write_text("{}")
    manifest = Manifest(
        id="abc123",
        app="flaskr",
        created="t",
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="",
        app_wheel=WheelRef("flaskr-1.0-py3-none-any.whl", "x"),
    )
    return Artifact(tmp_path, manifest, reused=False)


def test_install_makes_an_offline_venv_and_links_persistent_data(tmp_path: Path) -> None:
    spec = Spec.model_validate(
        {"name": "flaskr", "entry": "flaskr:create_app()", "persistent": ["uploads/img"]}
    )
    app = HostLayout(Path("/srv/sy")).app("flaskr")
    steps = install_steps(spec, app, _artifact(tmp_path), Path("/cache/wheels"), "/usr/bin/python3")
    commands = [s.argv for s in steps if isinstance(s, Command)]
    install = next(argv for argv in commands if "install" in argv)
    assert {"--offline", "--no-index"} <= set(install)
    assert install[install.index("--find-links") + 1] == "/cache/wheels"
    assert install[-1] == "/srv/sy/flaskr/releases/abc123/app/flaskr-1.0-py3-none-any.whl"
    links = [s for s in steps if isinstance(s, Symlink)]
    assert (
        Symlink(
            "/srv/sy/flaskr/shared/var", PurePosixPath("/srv/sy/flaskr/releases/abc123/venv/var")
        )
        in links
    )
    assert (
        Symlink(
            "/srv/sy/flaskr/shared/data/uploads/img",
            PurePosixPath("/srv/sy/flaskr/releases/abc123/uploads/img"),
        )
        in links
    )
    uploads = [s for s in steps if isinstance(s, Upload)]
    assert uploads[-1].dest == PurePosixPath("/srv/sy/flaskr/releases/abc123/.complete")
    assert any(u.dest.name == "gunicorn.conf.py" for u in uploads)


def test_environment_layers_spec_then_config_then_shipyards_own() -> None:
    spec = Spec.model_validate(
        {"name": "flaskr", "entry": "flaskr:create_app()", "env": {"A": "spec", "B": "spec"}}
    )
    app = HostLayout(Path("/srv/sy")).app("flaskr")
    env = app_environment(spec, app, "abc", {"B": "config"})
    assert env["A"] == "spec"
    assert env["B"] == "config"
    assert env["FLASK_APP"] == "flaskr:create_app()"
    assert env["PYTHONPATH"] == "/srv/sy/flaskr/releases/abc"
    assert env["PATH"].startswith("/srv/sy/flaskr/releases/abc/venv/bin:")
    assert env["SHIPYARD_RELEASE"] == "abc"
    assert "FLASK_DEBUG" not in env
