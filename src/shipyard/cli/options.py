"""Option types the commands share."""

from __future__ import annotations

from typing import Any

import click


class PlainPath(click.Path):
    """click's Path, with a NUL refused as a usage error (os.stat would raise on it)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "\x00" in value:
            self.fail(f"{value!r} holds a NUL character: not a path.", param, ctx)
        return super().convert(value, param, ctx)
