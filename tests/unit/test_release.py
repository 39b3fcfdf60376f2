"""Install steps as data, and the environment a release runs with."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from shipyard.host.artifact import Artifact, Manifest, WheelRef
from shipyard.host.bytecode import CompileTree, CompileVenv
from shipyard.host.filesteps import Chown, LinkTree, MakeDirs, RemoveTree
from shipyard.host.layout import HostLayout
from shipyard.host.python import PythonInfo
from shipyard.host.release import (
    LAYER_PTH,
    app_environment,
    install_steps,
    layer_id,
    layer_steps,
    prune_layers,
    release_layer,
)
from shipyard.host.steps import Command, Symlink, Upload
from shipyard.host.venvs import InstallWheel, LinkScripts, MakeVenv
from shipyard.spec.model import Spec

PYTHON = PythonInfo("/usr/bin/python3", "3.11.2")


def _artifact(tmp_path: Path, **wheels: str) -> Artifact:
    (tmp_path / "app").mkdir(parents=True, exist_ok=True)
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
        wheels=[WheelRef(f"{name}-1.0-py3-none-any.whl", sha) for name, sha in wheels.items()],
    )
    return Artifact(tmp_path, manifest, reused=False)


def test_install_makes_an_offline_venv_and_links_persistent_data(tmp_path: Path) -> None:
    spec = Spec.model_validate(
        {"name": "flaskr", "entry": "flaskr:create_app()", "persistent": ["uploads/img"]}
    )
    app = HostLayout(Path("/srv/sy")).app("flaskr")
    artifact = _artifact(tmp_path, flask="f1")
    steps = install_steps(spec, app, artifact, Path("/cache/wheels"), PYTHON)
    commands = [s.argv for s in steps if isinstance(s, Command)]
    # the venv gets the app alone; its dependencies are the layer's, found through a .pth
    venv = Path("/srv/sy/flaskr/releases/abc123/venv")
    assert MakeVenv(PYTHON, venv) in steps
    wheel = Path("/srv/sy/flaskr/releases/abc123/app/flaskr-1.0-py3-none-any.whl")
    assert InstallWheel((wheel,), venv, "3.11") in steps
    assert not any("uv" in Path(argv[0]).name for argv in commands)
    # no process for file work (the artifact is linked in, in this process); the compile step
    # is a step of its own, which runs here when it can
    assert commands == []
    compile_venv = next(s for s in steps if isinstance(s, CompileVenv))
    assert compile_venv == CompileVenv(venv)
    assert str(compile_venv) == f"{venv}/bin/python -m compileall -q {venv}/lib"
    assert steps.index(compile_venv) == len(steps) - 2  # then the completeness mark
    release = Path("/srv/sy/flaskr/releases/abc123")
    assert LinkTree((tmp_path / "app", tmp_path / "manifest.json"), release) in steps
    layer = f"/srv/sy/flaskr/layers/{layer_id(artifact, PYTHON)}"
    pth = next(s for s in steps if isinstance(s, Upload) and s.dest.name == LAYER_PTH)
    site = "/srv/sy/flaskr/releases/abc123/venv/lib/python3.11/site-packages"
    assert str(pth.dest) == f"{site}/{LAYER_PTH}"
    assert pth.content.decode() == (
        f"import site; site.addsitedir('{layer}/lib/python3.11/site-packages')\n"
    )
    assert LinkScripts(Path(layer) / "bin", venv / "bin") in steps
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


def _tree_artifact(tmp_path: Path) -> Artifact:
    (tmp_path / "src").mkdir(parents=True, exist_ok=True)
    (tmp_path / "manifest.json").write_text("{}")
    manifest = Manifest(
        id="abc123",
        app="site",
        created="t",
        python="3.11.2",
        source_sha256="s",
        lock_sha256="l",
        git_sha="",
        app_wheel=None,
        tree={"app.py": "a", "helpers.py": "h"},
    )
    return Artifact(tmp_path, manifest, reused=False)


def test_a_source_tree_runs_in_place_with_its_data_linked_beside_it(tmp_path: Path) -> None:
    spec = Spec.model_validate(
        {
            "name": "site",
            "entry": "app:app",
            "persistent": ["uploads", "media/avatars"],
            "persistent_files": ["db.sqlite3", "var/cache.db"],
        }
    )
    app = HostLayout(Path("/srv/sy")).app("site")
    artifact = _tree_artifact(tmp_path)
    assert artifact.manifest.is_tree and artifact.manifest.version == ""
    steps = install_steps(spec, app, artifact, Path("/cache/wheels"), PYTHON, run_as="web")
    release = Path("/srv/sy/site/releases/abc123")
    tree = release / "src"
    # the tree is linked in with the rest of the artifact; no wheel to install into the venv
    assert LinkTree((tmp_path / "manifest.json", tmp_path / "src"), release) in steps
    assert not any(isinstance(s, InstallWheel) for s in steps)
    assert MakeVenv(PYTHON, release / "venv") in steps
    data = Path("/srv/sy/site/shared/data")
    links = {str(s.link): s.target for s in steps if isinstance(s, Symlink)}
    assert links[f"{tree}/uploads"] == f"{data}/uploads"
    assert links[f"{tree}/media/avatars"] == f"{data}/media/avatars"
    # a file's link dangles until the app makes the file, in a directory of the app user's
    assert links[f"{tree}/db.sqlite3"] == f"{data}/db.sqlite3"
    assert links[f"{tree}/var/cache.db"] == f"{data}/var/cache.db"
    assert MakeDirs((data / "var", tree / "var")) in steps
    assert Chown("web", (data / "var",)) in steps
    assert MakeDirs((data / "media/avatars", tree / "media")) in steps
    # Flask's instance folder beside the code persists without configuration, where an
    # installed app's is kept; made before the app user is given shared/var
    instance = Path("/srv/sy/site/shared/var/app-instance")
    assert links[f"{tree}/instance"] == str(instance)
    made = next(s for s in steps if isinstance(s, MakeDirs))
    assert instance in made.paths
    assert steps.index(made) < steps.index(Chown("web", (app.var, app.run), recursive=True))
    # the tree's modules are compiled into the release: the app user cannot write there
    assert steps[-2] == CompileTree(tree, release / "venv")
    assert steps.index(CompileVenv(release / "venv")) < len(steps) - 2


def test_an_instance_folder_the_spec_persists_is_linked_as_the_spec_says(tmp_path: Path) -> None:
    spec = Spec.model_validate({"name": "site", "entry": "app:app", "persistent": ["instance"]})
    app = HostLayout(Path("/srv/sy")).app("site")
    steps = install_steps(spec, app, _tree_artifact(tmp_path), Path("/cache/wheels"), PYTHON)
    links = [(str(s.link), s.target) for s in steps if isinstance(s, Symlink)]
    instance = "/srv/sy/site/releases/abc123/src/instance"
    assert [target for link, target in links if link == instance] == [
        "/srv/sy/site/shared/data/instance"
    ]


def test_a_source_tree_s_release_has_its_tree_on_the_path() -> None:
    spec = Spec.model_validate({"name": "site", "entry": "app:app"})
    app = HostLayout(Path("/srv/sy")).app("site")
    env = app_environment(spec, app, "abc", {}, tree=True)
    assert env["PYTHONPATH"] == "/srv/sy/site/releases/abc/src"
    assert env["PATH"].startswith("/srv/sy/site/releases/abc/venv/bin:")


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


def test_the_layer_is_made_once_per_dependency_set_and_python(tmp_path: Path) -> None:
    app = HostLayout(Path("/srv/sy")).app("flaskr")
    one = _artifact(tmp_path / "a", flask="f1", jinja2="j1")
    same = _artifact(tmp_path / "b", jinja2="j1", flask="f1")
    other = _artifact(tmp_path / "c", flask="f2", jinja2="j1")
    assert layer_id(one, PYTHON) == layer_id(same, PYTHON)
    assert layer_id(one, PYTHON) != layer_id(other, PYTHON)
    assert layer_id(one, PYTHON) != layer_id(one, PythonInfo("/usr/bin/python3.12", "3.12.1"))
    steps = layer_steps(app, one, Path("/cache/wheels"), PYTHON)
    layer = Path(f"/srv/sy/flaskr/layers/{layer_id(one, PYTHON)}")
    assert steps[:3] == [
        RemoveTree(layer),  # an incomplete one is made again
        MakeVenv(PYTHON, layer),
        # exactly the release's pinned wheels, from the store (each checked when it arrived)
        InstallWheel(
            (
                Path("/cache/wheels/flask-1.0-py3-none-any.whl"),
                Path("/cache/wheels/jinja2-1.0-py3-none-any.whl"),
            ),
            layer,
            "3.11",
            "the dependency wheel",
        ),
    ]
    assert steps[3] == CompileVenv(layer)
    last = steps[-1]
    assert isinstance(last, Upload) and str(last.dest) == f"{layer}/.complete"


def test_layers_no_release_uses_are_pruned(tmp_path: Path) -> None:
    app = HostLayout(tmp_path).app("flaskr")
    for release, layer in {"r1": "l1", "r2": "l2", "r3": "l2"}.items():
        app.release(release).mkdir(parents=True)
        (app.release(release) / "layer").write_text(f"{layer}\n")
        app.layer(layer).mkdir(parents=True, exist_ok=True)
    app.release("old").mkdir()  # a release from before layers: its venv has its dependencies
    app.layer("orphan").mkdir()
    assert release_layer(app, "r3") == "l2" and release_layer(app, "old") is None
    assert prune_layers(app) == ["orphan"]
    (tmp_path / "flaskr" / "releases" / "r1" / "layer").unlink()
    assert prune_layers(app) == ["l1"]
    assert sorted(p.name for p in app.layers.iterdir()) == ["l2"]
