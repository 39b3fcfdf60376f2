"""What the user sees: stage progress with timings, tables, and error paragraphs (rich)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


class Reporter:
    """Prints each stage with its duration; quiet details when not on a terminal.

    rich is imported on first output: the host agent's quiet reporter never loads it.
    """

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self._console = console
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False)
        return self._console

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        if not self.quiet and self.console.is_terminal:
            with self.console.status(f"{escape(name)}…"):
                yield
        else:
            yield
        elapsed = time.monotonic() - started
        self.timings[name] = elapsed
        if not self.quiet:
            self.console.print(f"[green]✓[/] {escape(name)} [dim]{elapsed:.2f}s[/]")

    def done(self, name: str, elapsed: float) -> None:
        """A stage that ran in the background, reported when it is joined."""
        self.timings[name] = elapsed
        if not self.quiet:
            self.console.print(f"[green]✓[/] {escape(name)} [dim]{elapsed:.2f}s[/]")

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(f"  [dim]{escape(text)}[/]")

    def warn(self, text: str) -> None:
        self.console.print(f"[yellow]![/] {escape(text)}")


def error_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, force_terminal=sys.stdout.isatty())
