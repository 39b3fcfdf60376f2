"""Bad input of every kind gets one clear paragraph and an exit code, never a traceback."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shipyard.cli.commands import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out, err = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 1), out, err


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "shipyard.toml").write_text('name = "web"\nentry = "web:app"\n')
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_no_spec_says_where_and_what_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["check", str(tmp_path)], capsys)
    assert code == 1
    assert "no shipyard.toml" in err and str(tmp_path) in err
    assert "shipyard init" in err
    assert "Traceback" not in err


def test_invalid_spec_names_file_key_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "shipyard.toml").write_text(
        'name = "Bad Name"\nentry = "web:app"\n[server]\nworkers = -1\n'
    )
    code, _, err = run_cli(["check", str(tmp_path)], capsys)
    assert code == 1
    assert "shipyard.toml" in err
    assert "name:" in err and "'Bad Name'" in err
    assert "server.workers:" in err and "-1" in err
    assert "Traceback" not in err


def test_missing_project_dir_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["status", str(tmp_path / "nope")], capsys)
    assert code == 2
    assert "does not exist" in err


def test_run_without_a_command(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", str(project), "--"], capsys)
    assert code == 2
    assert "no command given" in err


def test_run_before_any_deploy(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["run", str(project), "--", "true"], capsys)
    assert code == 1
    assert "not deployed" in err and "shipyard deploy" in err


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("1BAD=x", "must be letters, digits and '_'"),
        ("PATH=/x", "set by shipyard itself"),
        ("NOEQUALS", "no value for NOEQUALS on stdin"),
    ],
)
def test_config_set_rejects_bad_pairs(
    project: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pair: str,
    message: str,
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, _, err = run_cli(["config", "set", "--dir", str(project), pair], capsys)
    assert code == 2
    assert message in err
    assert not (project / "home" / "web" / "shared" / "config.json").exists()


def test_a_lone_key_among_pairs_is_refused(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(["config", "set", "--dir", str(project), "A=1", "TOKEN"], capsys)
    assert code == 2 and "is not KEY=VALUE" in err and "stdin" in err


def test_a_lone_key_takes_its_value_from_stdin_so_no_command_line_shows_it(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("line one\nline two\n"))
    code, out, _ = run_cli(["config", "set", "--dir", str(project), "TOKEN"], capsys)
    assert code == 0 and "set TOKEN" in out and "line" not in out
    code, out, _ = run_cli(["config", "list", "--dir", str(project), "--json", "--reveal"], capsys)
    assert json.loads(out)["TOKEN"]["value"] == "line one\nline two"  # the final newline goes


def test_config_set_before_deploy_stores_the_value_privately(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(["config", "set", "--dir", str(project), "TOKEN=s3cret"], capsys)
    assert code == 0 and "set TOKEN" in out and "s3cret" not in out
    stored = project / "home" / "web" / "shared" / "config.json"
    assert stored.stat().st_mode & 0o777 == 0o600
    code, out, _ = run_cli(["config", "list", "--dir", str(project)], capsys)
    assert "TOKEN=***" in out and "s3cret" not in out
    code, out, _ = run_cli(["config", "list", "--dir", str(project), "--reveal"], capsys)
    assert "TOKEN=s3cret" in out


def test_rollback_with_nothing_deployed(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["rollback", str(project)], capsys)
    assert code == 2
    assert "no earlier release" in err


def test_rollback_to_an_unknown_release(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["rollback", str(project), "--to", "feed"], capsys)
    assert code == 2
    assert "'feed' is not a release on disk" in err


def test_unknown_target(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["status", str(project), "--target", "prod"], capsys)
    assert code == 1
    assert "no target named 'prod'" in err


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["deploy", "--frobnicate"], capsys)
    assert code == 2
    assert "No such option" in err


def test_destroy_needs_confirmation(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["destroy", str(project)], capsys)
    assert code == 2
    assert "--yes" in err


def test_an_internal_error_writes_the_traceback_to_a_file(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_args: object, **_kwargs: object) -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr("shipyard.targets.local.load_state", explode)
    code, _, err = run_cli(["releases", str(project)], capsys)
    assert code == 70
    assert "internal error" in err and "Traceback" not in err
    crash = next((project / "cache" / "crash").glob("shipyard-crash-*.log"))
    assert "ZeroDivisionError: boom" in crash.read_text()


def test_destroying_an_app_that_is_not_there_says_so(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(["destroy", str(project), "--yes"], capsys)
    assert code == 0, err
    assert out.strip() == "app web is not on local: nothing to destroy"
    assert not (project / "home").exists()  # and nothing was made to find that out


INJECTIONS = [
    # a `domains` value that would close server_name and add a location of its own
    ('domains = ["a.example; location /x { return 200 \\"owned\\"; }"]', "domains:"),
    ('domains = ["a.example\\nlocation /x { return 200 owned; }"]', "domains:"),
    ('domains = ["-bad.example"]', "domains:"),
    ('[targets.local]\nbase_dir = "/srv/x; }"', "base_dir"),
    ('[targets.local]\nbase_dir = "/srv/x\\ny"', "base_dir"),
    ('[targets.local]\nbase_dir = "/srv/%(here)s"', "base_dir"),  # supervisor interpolation
    ('release = "migrate\\u0000now"', "release:"),
    ('persistent = ["data\\u0000"]', "persistent:"),
]


@pytest.mark.parametrize(("line", "names"), INJECTIONS)
def test_values_that_would_change_a_rendered_config_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, names: str
) -> None:
    (tmp_path / "shipyard.toml").write_text(f'name = "web"\nentry = "web:app"\n{line}\n')
    code, _, err = run_cli(["check", str(tmp_path)], capsys)
    assert code == 1, err
    assert names in err and "shipyard.toml" in err
    assert "Traceback" not in err and "internal error" not in err


def test_plain_domains_wildcards_and_a_host_placeholder_pass(tmp_path: Path) -> None:
    from shipyard.spec.model import parse_spec

    raw = {
        "name": "web",
        "entry": "web:app",
        "domains": ["app.example.com", "*.example.com", "localhost", "10.0.0.7"],
        "targets": {"prod": {"hosts": ["web1"], "base_dir": "/srv/shipyard/{host}"}},
    }
    spec = parse_spec(raw, tmp_path / "shipyard.toml")
    assert spec.domains[1] == "*.example.com"


def test_a_base_dir_from_the_environment_is_checked_too(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(project / "with space"))
    code, _, err = run_cli(["status", str(project)], capsys)
    assert code == 2 and "SHIPYARD_HOME" in err and "Traceback" not in err
