"""Following logs: complete lines only, blank lines kept, partial lines held back."""

from __future__ import annotations

from pathlib import Path

from shipyard.host.logs import _emit_new


def test_follow_emits_complete_lines_and_keeps_blank_ones(tmp_path: Path) -> None:
    log = tmp_path / "web.log"
    log.write_bytes(b"abc\n\npartial")
    seen: list[str] = []
    offset = _emit_new("web", log, 0, seen.append)
    assert seen == ["[web] abc", "[web] "]
    assert offset == 5
    with log.open("ab") as handle:
        handle.write(b" line\n\n")
    offset = _emit_new("web", log, offset, seen.append)
    assert seen[2:] == ["[web] partial line", "[web] "]
    assert offset == log.stat().st_size
    assert _emit_new("web", log, offset, seen.append) == offset and len(seen) == 4
