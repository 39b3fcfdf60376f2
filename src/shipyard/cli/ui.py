"""What the user sees: stage progress with timings, tables, and error paragraphs (rich)."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

_MARKUP = re.compile(r"\[/?[a-z ]*\]")


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class Reporter:
    """The CLI's `Progress` (events.py): each stage with its duration, on stderr.

    On a terminal, rich draws a spinner and colours; anywhere else (CI logs, pipes, the
    benchmarks) plain lines are written and rich is never imported.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.timings: dict[str, float] = {}
        self._console: Console | None = None

    @property
    def console(self) -> Console | None:
        """rich's console when on a terminal; None otherwise."""
        if self._console is None and self.stream.isatty():
            from rich.console import Console

            self._console = Console(file=self.stream, highlight=False)
        return self._console

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        console = self.console
        if console is not None:
            with console.status(f"{escape(name)}…"):
                yield
        else:
            yield
        self.done(name, time.monotonic() - started)

    def done(self, name: str, elapsed: float) -> None:
        """A stage that ran in the background, reported when it is joined."""
        self.timings[name] = elapsed
        self._line("[green]✓[/] ", name, f" [dim]{elapsed:.2f}s[/]")

    def note(self, text: str) -> None:
        self._line("  [dim]", text, "[/]")

    def warn(self, text: str) -> None:
        self._line("[yellow]![/] ", text)

    def _line(self, before: str, text: str, after: str = "") -> None:
        """`text` between two bits of rich markup, or plain without them."""
        console = self.console
        if console is not None:
            console.print(before + escape(text) + after)
            return
        plain = _MARKUP.sub("", before) + text + _MARKUP.sub("", after)
        self.stream.write(plain + "\n")
        self.stream.flush()


def error_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, force_terminal=sys.stdout.isatty())
