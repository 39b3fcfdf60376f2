"""A deploy plan's pieces: the diff of a file it would write, secrets masked, the build stages."""

from __future__ import annotations

from shipyard.plan import (
    MASK,
    Plan,
    PlannedStage,
    build_stages,
    file_change,
    masked_env,
)


def test_a_new_file_is_all_added_lines_against_nothing() -> None:
    change = file_change("/srv/site.conf", None, b"server {\n}\n")
    assert change.path == "/srv/site.conf"
    assert change.diff.splitlines() == [
        "--- /srv/site.conf (now)",
        "+++ /srv/site.conf (new)",
        "@@ -0,0 +1,2 @@",
        "+server {",
        "+}",
    ]


def test_a_changed_file_shows_only_its_changed_lines_in_context() -> None:
    before = "".join(f"line {n}\n" for n in range(1, 11)).encode()
    after = before.replace(b"line 8\n", b"line eight\n")
    lines = file_change("site.conf", before, after).diff.splitlines()
    # three lines of context each side of the one change, nothing further off
    assert lines[2:] == [
        "@@ -5,6 +5,6 @@",
        " line 5",
        " line 6",
        " line 7",
        "-line 8",
        "+line eight",
        " line 9",
        " line 10",
    ]


def test_an_unchanged_file_has_an_empty_diff() -> None:
    assert file_change("env", b"A=1\n", b"A=1\n").diff == ""
    assert file_change("empty", None, b"").diff == ""  # absent and empty read alike


def test_undecodable_bytes_are_shown_replaced_not_raised() -> None:
    diff = file_change("blob", b"\xff\n", b"ok\n").diff
    assert "-\ufffd" in diff.splitlines() and "+ok" in diff.splitlines()


def test_a_last_line_without_its_newline_is_marked_not_run_into_the_next() -> None:
    # a file edited on the host may lack its final newline: as diff -u shows it
    lines = file_change("env", b"A=1\nB=2", b"A=1\nB=3\n").diff.splitlines()
    assert lines[2:] == [
        "@@ -1,2 +1,2 @@",
        " A=1",
        "-B=2",
        "\\ No newline at end of file",
        "+B=3",
    ]
    lines = file_change("f", b"a\n", b"a\nb").diff.splitlines()
    assert lines[-2:] == ["+b", "\\ No newline at end of file"]


def test_masked_env_hides_the_config_keys_values_and_keeps_the_rest() -> None:
    env = {"SECRET_KEY": "s3cr3t", "DATABASE_URL": "postgres://u:p@db/app", "PORT": "8000"}
    shown = masked_env(env, {"SECRET_KEY", "DATABASE_URL", "NOT_SET"})
    assert shown == {"SECRET_KEY": MASK, "DATABASE_URL": MASK, "PORT": "8000"}
    assert list(shown) == list(env)  # in the environment's order
    assert env["SECRET_KEY"] == "s3cr3t"  # the environment itself is left as it was
    assert MASK == "***"


def test_build_stages_say_whether_the_tests_run_and_the_artifact_is_built() -> None:
    test, build = build_stages("pytest -q", "abc123", built=False)
    assert (test.name, test.notes) == ("test", ["run 'pytest -q' in a clean venv"])
    assert build.name == "build"
    assert build.notes == [
        "artifact abc123: build the app wheel, fill the wheel store, collect static"
    ]
    skipped, reused = build_stages(None, "abc123", built=True)
    assert skipped.notes == ["tests skipped"]
    assert reused.notes == ["artifact abc123: already built, reused"]


def test_a_plan_round_trips_through_json_as_the_agent_sends_it() -> None:
    stage = PlannedStage(
        name="switch", steps=["reload nginx"], files=[file_change("f", None, b"x\n")]
    )
    plan = Plan(app="flaskr", host="web1", release="abc123", stages=[stage])
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again == plan and again.stages[0].files[0].diff.endswith("+x\n")
