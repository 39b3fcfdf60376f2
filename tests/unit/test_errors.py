"""Error messages read as sentences: an embedded text's own period is not doubled."""

from __future__ import annotations

import subprocess

import pytest

from shipyard.errors import BuildError, HostError, ShipyardError


def test_a_called_process_errors_period_is_not_doubled() -> None:
    err = subprocess.CalledProcessError(1, ["/home/u/.pyenv/shims/python3.12", "-c", "..."])
    assert str(err).endswith("exit status 1.")
    failed = BuildError(f"cannot run the spec's python: {err}.", hint=f"See {err}.")
    assert failed.message.endswith("exit status 1.") and not failed.message.endswith("..")
    assert failed.hint is not None and failed.hint.endswith("exit status 1.")
    assert ".." not in str(failed).replace("'...'", "")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("exit status 1..", "exit status 1."),
        ("exit status 1.. Fix it.", "exit status 1. Fix it."),
        ("it failed..\n  | output", "it failed.\n  | output"),
        (
            "it failed:\n  | Waiting for the db..\n  | done..",
            "it failed:\n  | Waiting for the db..\n  | done..",
        ),
        ("it timed out....", "it timed out..."),
        ("waiting...", "waiting..."),
        (
            "try 'shipyard run -- ...' and deploy again.",
            "try 'shipyard run -- ...' and deploy again.",
        ),
        ("cannot write ../shared or foo/.. here.", "cannot write ../shared or foo/.. here."),
        ("a range 1..3 stays.", "a range 1..3 stays."),
    ],
)
def test_only_a_doubled_stop_is_made_one(given: str, shown: str) -> None:
    assert ShipyardError(given).message == shown


def test_a_host_errors_message_is_tidied_too() -> None:
    assert (
        HostError("web1", "no python3: [Errno 2] nope.").message
        == "web1: no python3: [Errno 2] nope."
    )
    assert str(HostError("web1", "it broke..", hint="Retry..")) == "web1: it broke.\nRetry."
