"""The part of a crashed app server's output that explains the crash.

When an app dies at import, gunicorn's worker prints the app's traceback, and then its master
prints a longer traceback of its own (`HaltServer: Worker failed to boot`) that says nothing
about the app; supervisord restarting the program repeats both. Showing the last lines of the
log would show only gunicorn's, so its own tracebacks are dropped before taking the tail.
"""

from __future__ import annotations

import re

TRACEBACK_START = "Traceback (most recent call last):"
CHAINED = re.compile(r"^(During handling of the above exception|The above exception was)")
# Exceptions that a server raises about itself after the app's own error was printed.
SERVER_NOISE = ("gunicorn.errors.HaltServer",)


def excerpt(output: str, lines: int = 40) -> list[str]:
    """The last `lines` lines of `output`, without the servers' own halt tracebacks."""
    kept: list[str] = []
    chain: list[str] = []  # a traceback and the tracebacks chained to it
    raised: list[str] = []  # the exception lines of that chain
    state = "text"  # or "traceback", or "after" (an exception line: a chained one may follow)

    def end_chain() -> None:
        if not raised or not all(line.startswith(SERVER_NOISE) for line in raised):
            kept.extend(chain)
        chain.clear()
        raised.clear()

    for line in output.strip().splitlines():
        if line.startswith(TRACEBACK_START):
            if state == "text":
                end_chain()
            state = "traceback"
            chain.append(line)
        elif state == "traceback" and (line.startswith((" ", "\t")) or not line.strip()):
            chain.append(line)
        elif state == "traceback":
            chain.append(line)
            raised.append(line)
            state = "after"
        elif state == "after" and (not line.strip() or CHAINED.match(line)):
            chain.append(line)
        else:
            end_chain()
            state = "text"
            kept.append(line)
    end_chain()
    return kept[-lines:]
