"""SIGTERM and SIGHUP stop a command as Ctrl-C does; the record of a switch holds them back;
the fault-injection hook fires only where it is asked to, once."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import click
import pytest

from shipyard.cli import commands
from shipyard.errors import Terminated
from shipyard.host import faults, interrupts


@pytest.fixture
def hup_seen() -> Iterator[list[int]]:
    seen: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        seen.append(signum)

    before = signal.signal(signal.SIGHUP, note)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGHUP, before)


@pytest.mark.parametrize("how", ["raised", "through click's Abort"])
def test_a_terminated_command_exits_128_plus_the_signal_and_says_so(
    how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(**_kwargs: object) -> None:
        if how == "raised":
            raise Terminated(signal.SIGTERM)
        try:
            raise Terminated(signal.SIGTERM)
        except KeyboardInterrupt as err:  # as click's main does
            raise click.exceptions.Abort() from err

    monkeypatch.setattr(commands.cli, "main", interrupted)
    with pytest.raises(SystemExit) as exit_info:
        commands.main(["status"])
    assert exit_info.value.code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "terminated by SIGTERM" in err and "switched back" in err
    assert "Traceback" not in err


def test_the_handler_raises_once_and_ignores_a_second_signal() -> None:
    before = {signum: signal.getsignal(signum) for signum in commands.TERMINATING}
    try:
        with pytest.raises(Terminated) as raised:
            commands._terminate(signal.SIGHUP, None)
        assert raised.value.signum == signal.SIGHUP
        assert isinstance(raised.value, KeyboardInterrupt)  # Ctrl-C's way back
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in commands.TERMINATING)
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def test_held_signals_act_once_the_block_is_done(hup_seen: list[int]) -> None:
    with interrupts.held():
        os.kill(os.getpid(), signal.SIGHUP)
        assert hup_seen == []
    assert hup_seen == [signal.SIGHUP]


def test_a_fault_point_fires_only_when_named_and_once(
    hup_seen: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(faults, "_fired", set())
    monkeypatch.delenv(faults.VARIABLE, raising=False)
    faults.point("switch:after-reload")
    assert hup_seen == []  # inert without the variable
    monkeypatch.setenv(faults.VARIABLE, "switch:after-reload:HUP")
    faults.point("switch:before-record")
    assert hup_seen == []  # another point
    faults.point("switch:after-reload")
    faults.point("switch:after-reload")  # the way back passes it again
    assert hup_seen == [signal.SIGHUP]
