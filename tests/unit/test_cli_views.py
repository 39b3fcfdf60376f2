"""The CLI over a fake Target: each command is one Target call, and its typed result is
rendered the same way whatever kind of target returned it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shipyard.cli.commands import main
from shipyard.events import Progress
from shipyard.plan import FileChange, Plan, PlannedStage
from shipyard.spec.model import Spec
from shipyard.targets.base import (
    Checked,
    ConfigChanged,
    Deployed,
    Destroyed,
    HostProblem,
    HostReleases,
    HostStatus,
    Process,
    ProcessesChanged,
    Provisioned,
    ReleaseRow,
    Restarted,
    RolledBack,
    Scaled,
    Status,
)

HOSTS = ["web1", "web2"]


class FakeTarget:
    """Answers every verb from canned results, and records what it was asked."""

    healthy = True

    def __init__(self, spec: Spec, name: str) -> None:
        self.spec = spec
        self.name = name
        self.calls: list[tuple[str, Any]] = []
        self.closed = False

    def _note(self, verb: str, arg: Any = None) -> None:
        self.calls.append((verb, arg))

    def check(self) -> Checked:
        self._note("check")
        return Checked(self.spec.name, self.name, self.spec.entry, [HostProblem("web1", "")])

    def plan(self, *, skip_tests: bool = False) -> list[Plan]:
        self._note("plan", skip_tests)
        change = FileChange(path="/srv/site.conf", diff="--- a\n+++ b\n+listen 80;\n")
        stage = PlannedStage(name="configure", notes=["a note"], steps=["$ step"], files=[change])
        return [Plan(app=self.spec.name, host=h, release="r2", stages=[stage]) for h in HOSTS]

    def deploy(self, progress: Progress, *, skip_tests: bool, lock_wait: float) -> Deployed:
        self._note("deploy", (skip_tests, lock_wait))
        with progress.stage("build"):
            progress.note("artifact r2")
        return Deployed("r2", "http://lb:80/", ["web1"], ["web2"], 1234)

    def rollback(self, progress: Progress, *, to: str | None, lock_wait: float) -> RolledBack:
        self._note("rollback", to)
        return RolledBack(["r1"], HOSTS)

    def restart(self, progress: Progress, *, lock_wait: float) -> Restarted:
        self._note("restart", lock_wait)
        return Restarted("r2", HOSTS)

    def scale(self, progress: Progress, changes: dict[str, int], *, lock_wait: float) -> Scaled:
        self._note("scale", changes)
        return Scaled(changes, HOSTS, "r2" if "web" in changes else None)

    def status(self) -> Status:
        self._note("status")
        procs = [Process("app-web-blue", "RUNNING", 42, "pid 42")]
        hosts = [
            HostStatus("web1", release="r2", slot="blue", healthy=self.healthy, processes=procs),
            HostStatus("lb1", role="lb", agent_version="0.1.0"),
        ]
        return Status(self.spec.name, self.name, "http://lb:80/", hosts)

    def releases(self) -> list[HostReleases]:
        self._note("releases")
        row = ReleaseRow("r2", "0.1", "abc", "live", "2026-12-02T10:00:00Z", True, True)
        return [HostReleases(h, [row]) for h in HOSTS]

    def logs(
        self, process: str | None, lines: int, follow: bool, emit: Callable[[str], None]
    ) -> None:
        self._note("logs", (process, lines, follow))
        emit("web1 [access] GET /")

    def run_argv(self, command: list[str], host: str | None) -> list[str]:
        self._note("run_argv", (command, host))
        return ["/bin/true"]

    def config_get(self) -> dict[str, str]:
        self._note("config_get")
        return {"TOKEN": "s3cret"}

    def config_set(self, progress: Progress, updates: dict[str, str]) -> ConfigChanged:
        self._note("config_set", updates)
        return ConfigChanged(sorted(updates), HOSTS)

    def config_unset(self, progress: Progress, keys: list[str]) -> ConfigChanged:
        self._note("config_unset", keys)
        return ConfigChanged(keys, HOSTS)

    def start(self) -> ProcessesChanged:
        self._note("start")
        return ProcessesChanged({"web1": ["a-web-blue"], "web2": ["a-web-green"]})

    def stop(self) -> ProcessesChanged:
        self._note("stop")
        return ProcessesChanged({"web1": [], "web2": []})

    def destroy(self, *, purge: bool) -> Destroyed:
        self._note("destroy", purge)
        return Destroyed(self.spec.name, HOSTS, None if purge else "each host's shared/")

    def provision(self, progress: Progress, *, dry_run: bool) -> Provisioned:
        self._note("provision", dry_run)
        return Provisioned({"web1": ["install nginx"], "web2": []}, dry_run)

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def opened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[FakeTarget]:
    (tmp_path / "shipyard.toml").write_text('name = "web"\nentry = "web:app"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    made: list[FakeTarget] = []

    def fake_open(project: Path, spec: Spec, name: str, *_: object) -> FakeTarget:
        made.append(FakeTarget(spec, name))
        return made[-1]

    monkeypatch.setattr("shipyard.targets.open_target", fake_open)
    return made


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


def test_deploy_is_one_call_and_reports_hosts(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(["deploy", "--target", "prod", "--skip-tests", "--wait", "5"], capsys)
    assert code == 0 and out == "http://lb:80/\n"
    assert "✓ build" in err and "artifact r2" in err
    assert (
        "release r2 is live at http://lb:80/ on 2 host(s) (1 already were); sent 1234 bytes" in err
    )
    assert opened[0].calls == [("deploy", (True, 5.0))] and opened[0].closed
    assert opened[0].name == "prod"


def test_dry_run_prints_each_hosts_plan(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(["deploy", "--dry-run"], capsys)
    assert code == 0 and opened[0].calls == [("plan", False)]
    for host in HOSTS:
        assert f"deploy plan for web on {host}: release r2" in out
    assert out.count("~ /srv/site.conf") == 2 and "+listen 80;" in out


def test_status_json_and_exit_code(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(["status", "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["healthy"] is True
    assert [h["host"] for h in report["hosts"]] == ["web1", "lb1"]
    assert report["hosts"][0]["processes"][0]["pid"] == 42


def test_unhealthy_status_exits_1(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeTarget, "healthy", False)
    code, out, _ = cli(["status"], capsys)
    assert code == 1 and "unhealthy" in out and "web1" in out


def test_a_process_down_makes_status_exit_1(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def status(self: FakeTarget) -> Status:
        procs = [
            Process("a-web-blue", "RUNNING", 42, "pid 42, uptime 0:01:00"),
            Process("a-worker-blue", "BACKOFF", 0, "Exited too quickly"),
        ]
        host = HostStatus("web1", release="r2", slot="blue", healthy=True, processes=procs)
        return Status("a", "prod", "http://lb/", [host])

    monkeypatch.setattr(FakeTarget, "status", status)
    code, out, _ = cli(["status"], capsys)
    assert code == 1 and "processes down: a-worker-blue BACKOFF" in out


def test_scale_reads_name_count_pairs(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["scale", "worker=three"], capsys)
    assert code != 0 and "cannot read 'worker=three' as a count" in err


def test_the_other_verbs_each_call_their_target_method(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str]
) -> None:
    expected = {
        ("rollback", "--to", "r1"): ("rollback", "r1", "release r1 is live again on web1, web2"),
        ("restart",): ("restart", 120.0, "release r2 restarted on web1, web2"),
        ("scale", "worker=3", "web=2"): (
            "scale",
            {"worker": 3, "web": 2},
            "scale web=2 worker=3 on web1, web2; release r2 restarted",
        ),
        ("releases",): ("releases", None, "r2"),
        ("logs", "-n", "3"): ("logs", (None, 3, False), "web1 [access] GET /"),
        ("config", "set", "A=1"): ("config_set", {"A": "1"}, "set A on web1, web2"),
        ("config", "unset", "A"): ("config_unset", ["A"], "unset A on web1, web2"),
        ("config", "list"): ("config_get", None, "TOKEN=***  # config"),
        ("start",): ("start", None, "started web1: a-web-blue; web2: a-web-green"),
        ("stop",): ("stop", None, "nothing was running"),
        ("destroy", "--yes"): ("destroy", False, "destroyed web on web1, web2 (data kept in"),
        ("provision", "prod", "--dry-run"): ("provision", True, "web1: would install nginx"),
        ("check",): ("check", None, "spec OK (app web, entry web:app"),
    }
    for args, (verb, arg, shown) in expected.items():
        code, out, err = cli(list(args), capsys)
        assert code == 0, (args, err)
        assert opened[-1].calls == [(verb, arg)], args
        assert shown in out and "s3cret" not in out, (args, out)


def test_run_execs_what_the_target_gives(
    opened: list[FakeTarget], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    execd: list[list[str]] = []

    def fake_exec(path: str, argv: list[str]) -> None:
        execd.append(argv)
        raise SystemExit(0)

    monkeypatch.setattr("os.execvp", fake_exec)
    code, _, _ = cli(["run", "--host", "web2", "--", "flask", "routes"], capsys)
    assert code == 0 and execd == [["/bin/true"]]
    assert opened[0].calls == [("run_argv", (["flask", "routes"], "web2"))]
