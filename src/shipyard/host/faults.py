"""A testing hook: a process that kills itself at a named step, so that tests can stop a
command exactly there. Inert unless SHIPYARD_FAULT names a point, e.g.
`SHIPYARD_FAULT=switch:after-reload:KILL` sends this process SIGKILL there (TERM, HUP and
INT work too). Each point fires once per process, so the cleanup that a handled signal
starts does not stop itself at the same point again."""

from __future__ import annotations

import os
import signal

VARIABLE = "SHIPYARD_FAULT"
_fired: set[str] = set()


def point(name: str) -> None:
    """Where the switch reaches step `name`: send the named signal if SHIPYARD_FAULT asks."""
    wanted = os.environ.get(VARIABLE)
    if not wanted or name in _fired:
        return
    where, _, signame = wanted.rpartition(":")
    if where != name:
        return
    _fired.add(name)
    os.kill(os.getpid(), signal.Signals[f"SIG{signame.upper()}"])
