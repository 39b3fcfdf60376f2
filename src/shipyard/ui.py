"""What the user sees: stage progress with timings, tables, and error paragraphs (rich)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape


class Reporter:
    """Prints each stage with its duration; quiet details when not on a terminal."""

    def __init__(self, console: Console | None = None, quiet: bool = False) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.quiet = quiet
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        if self.console.is_terminal and not self.quiet:
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
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    return Console(highlight=False, soft_wrap=True, force_terminal=sys.stdout.isatty())
