"""Property tests: any spec file, any value in it and any `config set` argument gives either
success or one clear error with its exit code, never an internal error or a traceback."""

from __future__ import annotations

import io
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard.cli.commands import main
from shipyard.errors import SpecError
from shipyard.spec.model import parse_spec

KEYS = [
    "name", "entry", "setup", "release", "listen", "domains", "python", "keep", "static",
    "persistent", "persistent_files", "env", "secrets", "processes", "server", "healthcheck",
    "tests", "build", "targets", "rollback_window", "workers", "type", "path", "status",
    "timeout", "base_dir", "hosts", "command", "requirements", "enabled", "mode",
]  # fmt: skip
# text with what breaks parsers and configs: controls, quotes, braces, NUL, non-ASCII
TEXT = st.text(alphabet=st.sampled_from(string.printable + "\x00\x7f{};$#%\"'\\ é☃"), max_size=30)
SCALARS = st.one_of(TEXT, st.integers(-(2**40), 2**40), st.booleans(), st.floats(allow_nan=True))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=4),
    ),
    max_leaves=12,
)
SPECS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=8).map(
    lambda raw: {"name": "web", "entry": "web:app", **raw}
)


@settings(max_examples=300, deadline=None)
@given(SPECS)
def test_any_spec_is_valid_or_one_clear_spec_error(raw: dict[str, Any]) -> None:
    try:
        parse_spec(raw, Path("/p/shipyard.toml"))
    except SpecError as err:
        assert "shipyard.toml" in err.message and "Traceback" not in err.message


def _toml_files() -> st.SearchStrategy[bytes]:
    lines = st.lists(
        st.one_of(
            st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(KEYS), TEXT),
            st.builds(lambda k: f"[{k}]", st.sampled_from(KEYS) | TEXT),
            TEXT,
        ),
        max_size=8,
    )
    text = lines.map(lambda found: "\n".join(['name = "web"', 'entry = "web:app"', *found]))
    return st.one_of(text.map(lambda t: t.encode("utf-8", "surrogatepass")), st.binary(max_size=60))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_toml_files())
def test_check_of_any_spec_file_exits_cleanly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
) -> None:
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "shipyard.toml").write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", str(tmp_path)])
    _, err = capsys.readouterr()
    assert exit_info.value.code in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(TEXT, min_size=1, max_size=3))
def test_config_set_of_any_argument_exits_cleanly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pairs: list[str],
) -> None:
    """An app never deployed here: `config set` validates its arguments, then says so."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a lone KEY reads its value there
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    (tmp_path / "shipyard.toml").write_text('name = "web"\nentry = "web:app"\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["config", "set", "--dir", str(tmp_path), "--", *pairs])
    _, err = capsys.readouterr()
    assert exit_info.value.code in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err


# Verbs that only read or refuse when the app was never deployed here; `deploy`, `start`
# and the like would build and start servers, and `logs -f` follows forever.
VERBS = [
    ["status"], ["releases"], ["rollback"], ["freeze"], ["check"], ["scale"], ["stop"],
    ["destroy"], ["config", "list"], ["config", "get"], ["config", "unset"], ["run"],
]  # fmt: skip
OPTIONS = ["--target", "-t", "--to", "--wait", "--host", "--json", "--yes", "--purge",
           "--reveal", "--hashes", "-o", "--dir", "--", "-h"]  # fmt: skip


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.sampled_from(VERBS), st.lists(st.sampled_from(OPTIONS) | TEXT, max_size=5))
def test_any_command_line_exits_cleanly(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    verb: list[str],
    args: list[str],
) -> None:
    """Any arguments to any verb: a result, a usage error or a clear error, never exit 70."""
    monkeypatch.setenv("SHIPYARD_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SHIPYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shipyard.toml").write_text('name = "web"\nentry = "web:app"\n')
    with pytest.raises(SystemExit) as exit_info:
        main([*verb, *args])
    _, err = capsys.readouterr()
    assert exit_info.value.code in (0, 1, 2), err
    assert "Traceback" not in err and "internal error" not in err
