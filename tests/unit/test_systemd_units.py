"""systemd units of an app, read back directive by directive (tests/unitfiles.py), and
every one accepted by `systemd-analyze verify` (systemd's own loader: it needs no systemd
running, only the unit files and the programs they start)."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shipyard.host import programs, render
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.render import units
from shipyard.spec.model import Spec
from unitfiles import Unit, load

RELEASE = "r1"
HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "UMask": "0027",
    "ProtectKernelTunables": "yes",
    "ProtectControlGroups": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
}


def _spec(**raw: object) -> Spec:
    return Spec.model_validate({"name": "shop", "entry": "shop:create_app()", **raw})


WSGI = _spec()
ASGI = _spec(entry="shop.asgi:app", server={"type": "uvicorn", "graceful_timeout": 12})
UWSGI = _spec(server={"type": "uwsgi"})
WITH_WORKERS = _spec(
    processes={
        "worker": {"command": "python -m shop.worker -q 'mail and $jobs' -r 50%", "count": 2},
        "clock": {"command": "python -m shop.clock"},
        "idle": {"command": "python -m shop.idle", "count": 0},
    }
)


def _render(
    tmp_path: Path, spec: Spec, slot: str = "blue", *, tree: bool = False, base: Path | None = None
) -> tuple[AppLayout, Path]:
    """The slot's unit files written into a unit directory of their own."""
    app = HostLayout(base or tmp_path / "base").app(spec.name)
    unit_dir = tmp_path / "units"
    files = units.slot_files(
        spec, app, RELEASE, slot, launcher=app.host.launcher, user="shop", group="shop", tree=tree
    )
    for file in files:
        path = unit_dir / file.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(file.content)
    return app, unit_dir


def _verify(unit_dir: Path, app: AppLayout, names: list[str]) -> None:
    """systemd-analyze verify, with the programs the units start in place (it checks that
    each ExecStart= binary is executable)."""
    launcher = app.host.launcher
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_bytes(render.launcher_script())
    launcher.chmod(0o755)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"},
    )
    assert result.returncode == 0, result.stderr
    # a warning (an unknown key, a bad value systemd ignores) names the file: none is allowed
    assert str(unit_dir) not in result.stderr, result.stderr


def _web(unit_dir: Path, slot: str = "blue") -> Unit:
    return load(unit_dir, f"shop-web@{slot}.service")


def test_a_wsgi_apps_web_unit_runs_its_supervisor_programs_command(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, WSGI)
    unit = _web(unit_dir)
    argv = render.server_argv(WSGI, app, RELEASE, "blue")
    assert unit.exec_start() == [
        str(app.host.launcher),
        str(app.env_file("blue")),
        str(app.release(RELEASE)),
        *argv,
    ]
    assert argv[0] == f"{app.venv(RELEASE)}/bin/gunicorn"
    assert f"unix:{app.socket('blue')}" in argv
    assert unit.get("Service", "WorkingDirectory") == str(app.release(RELEASE))
    assert unit.environment() == {
        "PATH": f"{app.venv(RELEASE)}/bin:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(app.venv(RELEASE)),
        "HOME": str(app.shared),
    }
    assert unit.get("Service", "Type") == "exec"
    assert unit.get("Service", "Restart") == "on-failure"
    assert unit.get("Service", "KillSignal") == "SIGTERM"
    assert unit.get("Service", "TimeoutStopSec") == str(WSGI.server.graceful_timeout + 5)
    assert unit.get("Unit", "Description") == f"shop web (slot blue, release {RELEASE})"
    _verify(unit_dir, app, ["shop-web@blue.service"])


def test_the_units_are_hardened_and_run_as_the_app_user(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, WSGI)
    unit = _web(unit_dir)
    assert unit.get("Service", "User") == "shop" and unit.get("Service", "Group") == "shop"
    for key, value in HARDENING.items():
        assert unit.get("Service", key) == value, key
    writable = unit.get("Service", "ReadWritePaths").split()
    assert writable == [
        str(app.data),  # persistent directories and files live under it
        str(app.run),
        str(app.logs),
        str(app.var),
        f"-{app.media}",
    ]
    # nothing else the app may write: not its releases, not its env files
    assert not any(str(app.release(RELEASE)).startswith(p.lstrip("-")) for p in writable)
    assert not any(str(app.env_file("blue")).startswith(p.lstrip("-")) for p in writable)


def test_output_goes_to_journald_not_to_files(tmp_path: Path) -> None:
    _, unit_dir = _render(tmp_path, WITH_WORKERS)
    for name in ("shop-web@blue.service", "shop-worker@blue-1.service"):
        unit = load(unit_dir, name)
        assert unit.get("Service", "StandardOutput") == "journal"
        assert unit.get("Service", "StandardError") == "journal"
        assert unit.get("Service", "SyslogIdentifier") == name.split("@")[0]


def test_each_slot_binds_its_own_socket_and_reads_its_own_env_file(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, WSGI, "green")
    argv = _web(unit_dir, "green").exec_start()
    assert argv[1] == str(app.env_file("green"))
    assert f"unix:{app.socket('green')}" in argv
    assert not (unit_dir / "shop-web@blue.service.d").exists()
    _verify(unit_dir, app, ["shop-web@green.service"])


def test_an_asgi_app_runs_its_server_launcher_on_the_slot_socket(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, ASGI)
    unit = _web(unit_dir)
    assert unit.exec_start()[3:] == [
        f"{app.venv(RELEASE)}/bin/python",
        f"{app.release(RELEASE)}/{render.SERVER_LAUNCHER}",
        str(app.socket("blue")),
    ]
    assert unit.get("Service", "TimeoutStopSec") == "17"
    _verify(unit_dir, app, ["shop-web@blue.service"])


def test_uwsgi_is_stopped_with_sigint_as_under_supervisor(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, UWSGI)
    assert _web(unit_dir).get("Service", "KillSignal") == "SIGINT"
    _verify(unit_dir, app, ["shop-web@blue.service"])


def test_a_source_tree_app_runs_in_its_tree(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, WSGI, tree=True)
    unit = _web(unit_dir)
    tree = app.workdir(RELEASE, tree=True)
    assert tree != app.release(RELEASE)
    assert unit.get("Service", "WorkingDirectory") == str(tree)
    assert unit.exec_start()[2] == str(tree)
    _verify(unit_dir, app, ["shop-web@blue.service"])


def test_workers_are_template_units_instantiated_per_slot_and_index(tmp_path: Path) -> None:
    app, unit_dir = _render(tmp_path, WITH_WORKERS)
    names = units.slot_units(WITH_WORKERS, app, "blue")
    assert names == [
        "shop-web@blue.service",
        "shop-clock@blue.service",
        "shop-worker@blue.service",
        "shop-worker@blue-1.service",
    ]
    assert len(names) == len(programs.slot_programs(app, WITH_WORKERS, "blue"))
    assert sorted(p.name for p in unit_dir.glob("*.service")) == [
        "shop-clock@.service",
        "shop-web@.service",
        "shop-worker@.service",
    ]  # none for a process scaled to 0
    worker = load(unit_dir, "shop-worker@blue-1.service")
    command = WITH_WORKERS.processes["worker"].command
    assert worker.exec_start()[3:] == shlex.split(command)
    assert worker.exec_start()[:3] == [
        str(app.host.launcher),
        str(app.env_file("blue")),
        str(app.release(RELEASE)),
    ]
    assert worker.get("Service", "KillSignal") == "SIGTERM"
    assert worker.get("Service", "Restart") == "on-failure"
    assert worker.get("Service", "User") == "shop"
    _verify(unit_dir, app, names)


def test_an_app_based_under_home_keeps_home_readable(tmp_path: Path) -> None:
    app = HostLayout(Path("/home/ann/apps")).app("shop")
    text = units.template_unit(app, "web", "ann", "ann")
    assert "ProtectHome=read-only" in text
    assert "ProtectHome=yes" not in text
    assert units.protect_home(Path("/root/x")) == "read-only"
    assert units.protect_home(Path("/srv/shipyard")) == "yes"
    assert units.protect_home(Path("/homes")) == "yes"


def test_verify_rejects_a_unit_with_a_missing_program(tmp_path: Path) -> None:
    """The check can fail: an instance without its release drop-in has no ExecStart=."""
    app, unit_dir = _render(tmp_path, WSGI)
    with pytest.raises(AssertionError, match="no ExecStart"):
        _verify(unit_dir, app, ["shop-web@green.service"])


WORD = st.text(alphabet=st.sampled_from("ab %$;#'\"\\\t=é{}-_/.@"), min_size=1, max_size=10)


@settings(max_examples=60, deadline=None)
@given(args=st.lists(WORD, min_size=1, max_size=4))
def test_any_command_reaches_the_program_word_for_word(args: list[str]) -> None:
    """Quotes, `%`, `$`, tabs and backslashes in a process's command come back as they
    were, and systemd accepts the unit."""
    spec = _spec(processes={"worker": {"command": shlex.join(["python", *args])}})
    with tempfile.TemporaryDirectory() as tmp:
        app, unit_dir = _render(Path(tmp), spec)
        worker = load(unit_dir, "shop-worker@blue.service")
        assert worker.exec_start()[3:] == ["python", *args]
        _verify(unit_dir, app, ["shop-worker@blue.service"])
