"""Installing a release (its layer first, once) with recorded steps, what a failed step leaves,
the release's record, and a one-off command in the live release as the app user."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeHost
from fleetfakes import make_artifact
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import DeployError, HostError
from shipyard.host import lifecycle
from shipyard.host.artifact import Artifact
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.python import PythonInfo
from shipyard.host.release import COMPLETE, layer_id
from shipyard.host.state import AppState, ReleaseRecord
from shipyard.host.steps import InstallContext

SPEC = make_spec()
PYTHON = PythonInfo("/usr/bin/python3", "3.11.2")


@dataclass
class Recorder:
    """Install steps that record their runs (and context), and may fail; the lists that the
    real layer_steps/install_steps would return are replaced by these."""

    runs: list[tuple[str, InstallContext]] = field(default_factory=list)
    fail: str | None = None
    asked: list[dict[str, Any]] = field(default_factory=list)

    def step(self, name: str, made: Path | None = None) -> Step:
        return Step(self, name, made)


@dataclass
class Step:
    recorder: Recorder
    name: str
    made: Path | None  # a directory the step makes, as a real step would, before it fails

    def run(self, ctx: InstallContext) -> None:
        self.recorder.runs.append((self.name, ctx))
        if self.made is not None:
            self.made.mkdir(parents=True, exist_ok=True)
        if self.recorder.fail == self.name:
            raise DeployError(f"{self.name} failed")


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path / "base"))


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    rec = Recorder()

    def layer_steps(app: AppLayout, artifact: Artifact, store: Path, python: PythonInfo) -> Any:
        layer = app.layer(layer_id(artifact, python))
        return [rec.step("make layer", layer), rec.step("compile layer")]

    def install_steps(
        spec: Any, app: AppLayout, artifact: Artifact, store: Path, python: Any, run_as: Any
    ) -> Any:
        rec.asked.append({"python": python, "run_as": run_as, "store": store})
        return [rec.step("unpack", app.release(artifact.id)), rec.step("venv")]

    monkeypatch.setattr(lifecycle, "find_python", lambda version: PYTHON)
    monkeypatch.setattr(lifecycle, "layer_steps", layer_steps)
    monkeypatch.setattr(lifecycle, "install_steps", install_steps)
    return rec


def _machine(host: FakeHost, run_as: str | None = None) -> lifecycle.Machine:
    return lifecycle.Machine(
        host.conn, host.layout, host.layout.wheels, LISTEN, run_as, servers=host.servers
    )


def _artifact(tmp_path: Path, release: str = "r1") -> Artifact:
    return make_artifact(tmp_path / "cache", release)


def test_a_first_release_makes_its_layer_then_installs_over_it(
    host: FakeHost, recorder: Recorder, tmp_path: Path
) -> None:
    app = host.layout.app(SPEC.name)
    artifact = _artifact(tmp_path)
    lifecycle.install_release(_machine(host, "app"), SPEC, app, artifact)
    assert [name for name, _ in recorder.runs] == ["make layer", "compile layer", "unpack", "venv"]
    contexts = dict(recorder.runs)
    # the layer unpacks the dependencies' bytecode bundles sent with this artifact
    assert contexts["make layer"].bundles_of is artifact and contexts["venv"].bundles_of is None
    assert all(
        ctx.conn is host.conn and ctx.wheels == host.layout.wheels for ctx in contexts.values()
    )
    assert recorder.asked == [{"python": PYTHON, "run_as": "app", "store": host.layout.wheels}]


def test_a_release_over_a_complete_layer_installs_only_itself(
    host: FakeHost, recorder: Recorder, tmp_path: Path
) -> None:
    app = host.layout.app(SPEC.name)
    artifact = _artifact(tmp_path)
    layer = app.layer(layer_id(artifact, PYTHON))
    layer.mkdir(parents=True)
    (layer / COMPLETE).write_text("")
    lifecycle.install_release(_machine(host), SPEC, app, artifact)
    assert [name for name, _ in recorder.runs] == ["unpack", "venv"]


def test_an_installed_release_is_not_installed_again(
    host: FakeHost, recorder: Recorder, tmp_path: Path
) -> None:
    app = host.layout.app(SPEC.name)
    app.release("r1").mkdir(parents=True)
    (app.release("r1") / COMPLETE).write_text("")
    lifecycle.install_release(_machine(host), SPEC, app, _artifact(tmp_path))
    assert recorder.runs == [] and recorder.asked == []


def test_a_failed_layer_is_removed_and_the_release_not_started(
    host: FakeHost, recorder: Recorder, tmp_path: Path
) -> None:
    app = host.layout.app(SPEC.name)
    artifact = _artifact(tmp_path)
    recorder.fail = "compile layer"
    with pytest.raises(DeployError, match="compile layer failed"):
        lifecycle.install_release(_machine(host), SPEC, app, artifact)
    assert not app.layer(layer_id(artifact, PYTHON)).exists()  # a later deploy makes it anew
    assert [name for name, _ in recorder.runs] == ["make layer", "compile layer"]
    assert not app.release("r1").exists()


def test_a_failed_install_removes_the_release_and_keeps_the_layer(
    host: FakeHost, recorder: Recorder, tmp_path: Path
) -> None:
    app = host.layout.app(SPEC.name)
    artifact = _artifact(tmp_path)
    recorder.fail = "venv"
    with pytest.raises(DeployError, match="venv failed"):
        lifecycle.install_release(_machine(host), SPEC, app, artifact)
    assert not app.release("r1").exists()
    assert app.layer(layer_id(artifact, PYTHON)).is_dir()


def test_an_installed_release_is_recorded_once_with_its_version(tmp_path: Path) -> None:
    state = AppState()
    artifact = _artifact(tmp_path)
    lifecycle.record_installed(state, artifact)
    assert state.releases == [ReleaseRecord(id="r1", created="t", version="1.0", git_sha="")]
    state.set_status("r1", "live")
    lifecycle.record_installed(state, artifact)  # installed again: its record stays as it is
    assert [(r.id, r.status) for r in state.releases] == [("r1", "live")]


# --- the app user, and one-off commands -----------------------------------------------------


def test_the_app_user_is_used_only_by_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert lifecycle.app_user_here("root") == "root"
    assert lifecycle.app_user_here("") is None
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert lifecycle.app_user_here("root") is None


def test_a_missing_app_user_names_the_machine_it_is_missing_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    with pytest.raises(HostError, match=r"^local: the app user 'no-such-user' does not exist"):
        lifecycle.app_user_here("no-such-user")
    # the agent on an ssh host: that host's name
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.1 5000 10.0.0.2 22")
    monkeypatch.setattr(socket, "gethostname", lambda: "web7")
    with pytest.raises(HostError, match=r"^web7: the app user") as raised:
        lifecycle.app_user_here("no-such-user")
    assert "shipyard provision TARGET" in str(raised.value.hint)


def _deployed(host: FakeHost) -> tuple[AppLayout, AppState]:
    app = host.layout.app(SPEC.name)
    return app, AppState(live="r1", slot="green")


def test_run_argv_runs_the_command_in_the_live_release_as_the_app_user(host: FakeHost) -> None:
    app, state = _deployed(host)
    put_release(app, "r1", SPEC)
    app.env_file("green").parent.mkdir(parents=True)
    app.env_file("green").write_text("A=1\n")
    argv = lifecycle.run_argv(app, state, ["flask", "shell"], run_as="app")
    assert argv == [
        "runuser",
        "-u",
        "app",
        "--",
        "setpriv",
        "--pdeathsig",
        "KILL",
        "--",
        str(host.layout.launcher),
        str(app.env_file("green")),
        str(app.release("r1")),
        "flask",
        "shell",
    ]
    assert lifecycle.run_argv(app, state, ["true"])[:2] == [
        str(host.layout.launcher),
        str(app.env_file("green")),
    ]


def test_run_argv_runs_a_source_tree_s_command_in_its_tree(host: FakeHost) -> None:
    app, state = _deployed(host)
    put_release(app, "r1", SPEC, tree=True)
    app.env_file("green").parent.mkdir(parents=True)
    app.env_file("green").write_text("A=1\n")
    argv = lifecycle.run_argv(app, state, ["python", "manage.py", "migrate"])
    assert argv[2:] == [str(app.release("r1") / "src"), "python", "manage.py", "migrate"]


def test_run_argv_refuses_without_the_apps_environment_or_a_live_release(
    host: FakeHost,
) -> None:
    app, state = _deployed(host)
    with pytest.raises(DeployError, match=r"cannot read the app's environment .*env\.green"):
        lifecycle.run_argv(app, state, ["true"])
    with pytest.raises(DeployError, match=r"app flaskr is not deployed under"):
        lifecycle.run_argv(app, AppState(), ["true"])
