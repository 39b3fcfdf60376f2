"""An ssh host as a target's `hosts` list writes it: `[user@]host[:port]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ADDRESS = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class SSHAddress:
    """`[user@]host[:port]` as written in a target's `hosts` list."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> SSHAddress:
        match = _ADDRESS.match(text.strip())
        if match is None or (match["port"] and not 0 < int(match["port"]) < 65536):
            raise ValueError(f"{text!r} is not an SSH address; expected [user@]host[:port]")
        port = int(match["port"]) if match["port"] else None
        return cls(match["host"].strip("[]"), match["user"], port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")
        )
