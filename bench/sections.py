"""The part of BENCHMARKS.md a benchmark owns, between its begin and end markers."""

from __future__ import annotations

from pathlib import Path


def write_section(path: Path, begin: str, end: str, section: str) -> None:
    """Put `section` (which starts with `begin` and ends with `end`) in place of the one
    between those markers in `path`, or at its end the first time."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section.rstrip("\n") + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
