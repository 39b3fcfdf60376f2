"""The blue/green switch with systemd keeping the app's processes: the same switch, its
steps as systemctl commands. A fake systemctl answers over the recording connection (no
systemd runs as PID 1 here): it starts an instance only if its release drop-in is there,
and a started web instance binds the socket its ExecStart= names."""

from __future__ import annotations

import re
import time
from pathlib import Path, PurePosixPath

import pytest
from fakes import FakeHost, Program, RecordingConnection
from hostkit import LISTEN, make_spec, put_release

from shipyard.errors import DeployError
from shipyard.host.layout import AppLayout, HostLayout
from shipyard.host.procman import SystemdPrograms
from shipyard.host.render.units import DROPIN, UNIT_DIR
from shipyard.host.steps import Command, Result
from shipyard.host.switch import Outcome, Switch
from shipyard.spec.model import Spec

APP = "flaskr"
_EXEC = re.compile(r"^ExecStart=.*$", re.M)


class FakeSystemctl:
    """systemctl and journalctl over a fake host's connection. Running units stand in the
    fake supervisor's table of servers, which the fake nginx and socket probes read."""

    def __init__(self, host: FakeHost) -> None:
        self.host = host
        self.conn: RecordingConnection = host.conn
        self.crashing: set[str] = set()
        self.conn.run = self.run  # type: ignore[method-assign]

    def run(self, command: Command) -> Result:
        self.conn.recorded.append(command)
        argv = command.argv
        self.conn.journal.append(
            " ".join(argv[:2]) + " " + " ".join(argv[argv.index("--") + 1 :])
            if "--" in argv
            else " ".join(argv)
        )
        out, code = "", 0
        if argv[:2] == ("systemctl", "start"):
            for unit in argv[argv.index("--") + 1 :]:
                dropin = self.conn.files.get(UNIT_DIR / f"{unit}.d" / DROPIN)
                if dropin is None:
                    out, code = f"Failed to start {unit}: Unit {unit} not found.", 5
                    continue
                state = "BACKOFF" if unit in self.crashing else "RUNNING"
                exec_start = _EXEC.findall(dropin.decode())[0]
                self.host.supervisor.programs[unit] = Program(unit, exec_start, state, 4000)
        elif argv[:2] == ("systemctl", "stop"):
            for unit in argv[argv.index("--") + 1 :]:
                if unit in self.host.supervisor.programs:
                    self.host.supervisor.programs[unit].state = "STOPPED"
        elif argv[:2] == ("systemctl", "show"):
            out = "\n\n".join(self._show(u) for u in argv[argv.index("--") + 1 :])
        elif argv[:2] in (("systemctl", "enable"), ("systemctl", "disable")):
            pass
        elif argv[0] == "journalctl":
            out = "Traceback (most recent call last):\nImportError: no module named redis\n"
        elif argv != ("systemctl", "daemon-reload"):
            raise AssertionError(f"unexpected command {argv}")
        return Result("fake", command, code, out, out if code else "", 0.0)

    def _show(self, unit: str) -> str:
        program = self.host.supervisor.programs.get(unit)
        loaded = (UNIT_DIR / f"{unit}.d" / DROPIN) in self.conn.files or program is not None
        active, sub, pid = {
            "RUNNING": ("active", "running", 4000),
            "BACKOFF": ("activating", "auto-restart", 0),
        }.get(program.state if program else "", ("inactive", "dead", 0))
        since = int((time.monotonic() - 60) * 1e6)  # up long past any startsecs
        return (
            f"MainPID={pid}\nResult=success\nNRestarts=0\nId={unit}\n"
            f"ActiveEnterTimestampMonotonic={since}\n"
            f"LoadState={'loaded' if loaded else 'not-found'}\nActiveState={active}\nSubState={sub}"
        )


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(HostLayout(tmp_path))


def _app(host: FakeHost, spec: Spec) -> AppLayout:
    app = host.layout.app(APP)
    for release_id in ("r1", "r2"):
        put_release(app, release_id, spec)
    return app


def _switch(host: FakeHost, app: AppLayout, release: str, live: tuple[str, str] | None) -> Switch:
    return Switch(
        host.conn,
        host.supervisor,
        app,
        release,
        config={"SECRET_KEY": "s3"},
        listen=LISTEN,
        live=live,
        run_release_command=False,
        servers=host.servers,
        nginx_check_timeout=0.05,
        procs=SystemdPrograms(host.conn, app, "shipyard"),
    )


def _commands(host: FakeHost, verb: str) -> list[tuple[str, ...]]:
    return [c[c.index("--") + 1 :] for c in host.conn.commands if c[:2] == ("systemctl", verb)]


def test_a_deploy_then_another_switches_units_blue_to_green(host: FakeHost) -> None:
    app = _app(host, make_spec(processes={"worker": "python worker.py"}))
    systemctl = FakeSystemctl(host)
    assert _switch(host, app, "r1", None).run() == Outcome("r1", "blue", None)
    blue = ("flaskr-web@blue.service", "flaskr-worker@blue.service")
    assert _commands(host, "start") == [blue]
    dropin = host.conn.text(Path(UNIT_DIR / "flaskr-web@blue.service.d" / DROPIN))
    assert "release r1" in dropin and f"unix:{app.socket('blue')}" in dropin
    assert "User=shipyard" in host.conn.text(Path(UNIT_DIR / "flaskr-web@.service"))
    assert host.nginx.release_served() == "r1"

    host.conn.recorded.clear()
    assert _switch(host, app, "r2", ("r1", "blue")).run() == Outcome("r2", "green", "r1")
    green = ("flaskr-web@green.service", "flaskr-worker@green.service")
    assert _commands(host, "start") == [green]
    assert host.nginx.release_served() == "r2"
    # the old slot is stopped without waiting (it finishes its requests), after the reload
    stop = ("systemctl", "stop", "--no-block", "--", *blue)
    assert stop in host.conn.commands
    journal = host.journal
    assert journal.index("nginx wait_drained") < journal.index("systemctl stop " + " ".join(blue))
    # its drop-in stays while it stops (its stop signal and timeout), until blue is used again
    assert "release r1" in host.conn.text(Path(UNIT_DIR / "flaskr-web@blue.service.d" / DROPIN))
    assert "release r2" in host.conn.text(Path(UNIT_DIR / "flaskr-web@green.service.d" / DROPIN))
    # boot starts the live slot from now on
    assert _commands(host, "disable") == [blue]
    assert _commands(host, "enable") == [green]
    assert systemctl.crashing == set()


def test_a_worker_that_does_not_stay_up_fails_the_deploy_and_its_slot_goes(
    host: FakeHost,
) -> None:
    app = _app(host, make_spec(processes={"worker": "python worker.py"}))
    systemctl = FakeSystemctl(host)
    _switch(host, app, "r1", None).run()
    systemctl.crashing.add("flaskr-worker@green.service")
    with pytest.raises(DeployError, match="process worker did not stay up") as failed:
        _switch(host, app, "r2", ("r1", "blue")).run()
    assert "ImportError: no module named redis" in str(failed.value)
    assert "journalctl -u flaskr-worker@green.service" in (failed.value.hint or "")
    green = ("flaskr-web@green.service", "flaskr-worker@green.service")
    assert ("systemctl", "stop", "--", *green) in host.conn.commands  # waited for
    assert UNIT_DIR / "flaskr-web@green.service.d" / DROPIN not in host.conn.files
    assert host.nginx.release_served() == "r1"
    assert host.supervisor.state("flaskr-web@blue.service") == "RUNNING"
    assert PurePosixPath(app.program_file("green")) not in host.conn.files  # no supervisor
