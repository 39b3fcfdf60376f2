"""Holding Ctrl-C, SIGTERM and SIGHUP back while a switch records what it did, so that an
interruption cannot fall between nginx serving the new release and state.json saying so."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


@contextmanager
def held() -> Iterator[None]:
    """The signals that stop a command wait until the block is done, then act at once.
    Only the main thread gets them (where Python runs their handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
