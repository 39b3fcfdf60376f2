"""Progress events that the code below the CLI sends up: stages, notes, warnings.

Nothing below the CLI prints. It is handed a `Progress`; the CLI's is rich's reporter
(cli/ui.py), a host agent's is `Silent`, and tests may record what was sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Progress(Protocol):
    """Where a long operation reports how it goes."""

    def stage(self, name: str) -> AbstractContextManager[None]: ...

    def done(self, name: str, elapsed: float) -> None: ...

    def note(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...


class Silent:
    """Progress that goes nowhere but keeps the stages' timings (a host's agent)."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.notes: list[str] = []
        self.warnings: list[str] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = time.monotonic() - started

    def done(self, name: str, elapsed: float) -> None:
        self.timings[name] = elapsed

    def note(self, text: str) -> None:
        self.notes.append(text)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
