"""The platform a release's wheels must install on: this machine's, or a host's.

A fleet of hosts of another architecture or C library (an aarch64 server deployed from an
x86_64 laptop) gets binary wheels fetched for it; what cannot be had as a wheel for it is a
clear error before anything is sent.
"""

from __future__ import annotations

import sysconfig
from dataclasses import dataclass
from functools import cache

from shipyard.host.python import local_libc

# Linux architectures with manylinux wheels and uv targets for resolving on their behalf.
ARCHES = ("x86_64", "aarch64")
# The manylinux versions uv resolves for (`uv pip compile --python-platform ARCH-manylinux_2_N`).
UV_MANYLINUX = (17, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40)
# The legacy manylinux names, by the glibc they stand for (x86_64 and i686 only, but 2014).
LEGACY = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


@dataclass(frozen=True)
class Platform:
    """sysconfig's platform name ("linux-x86_64") and the C library ("glibc 2.36", or "")."""

    name: str
    libc: str = ""

    @classmethod
    def parse(cls, name: str, libc: str) -> Platform:
        return cls(name.strip(), " ".join(libc.split()))

    @property
    def key(self) -> str:
        """What goes into artifact and lock ids."""
        return f"{self.name}/{self.libc}"

    @property
    def arch(self) -> str:
        return self.name.partition("-")[2]

    @property
    def glibc(self) -> tuple[int, int] | None:
        kind, _, version = self.libc.partition(" ")
        if kind != "glibc":
            return None
        major, _, minor = version.partition(".")
        try:
            return int(major), int(minor)
        except ValueError:
            return None

    @property
    def is_local(self) -> bool:
        return self == local_platform()

    def describe(self) -> str:
        return f"{self.name} ({self.libc})" if self.libc else self.name

    def wheel_platforms(self) -> list[str]:
        """Wheel platform tags that install here, most specific first (for `pip download`)."""
        glibc = self.glibc
        if not self.name.startswith("linux-") or glibc is None:
            return [self.name.replace("-", "_").replace(".", "_")]
        major, newest = glibc
        tags = []
        for minor in range(newest, 4, -1):
            tags.append(f"manylinux_{major}_{minor}_{self.arch}")
            legacy = LEGACY.get((major, minor))
            if legacy and (self.arch in ("x86_64", "i686") or minor == 17):
                tags.append(f"{legacy}_{self.arch}")
        return [*tags, f"linux_{self.arch}"]

    def uv_target(self) -> str | None:
        """uv's --python-platform for resolving on this platform's behalf; None: it has none."""
        glibc = self.glibc
        if self.arch not in ARCHES or glibc is None or glibc[0] != 2 or glibc[1] < 17:
            return None
        usable = [n for n in UV_MANYLINUX if n <= glibc[1]]
        return f"{self.arch}-manylinux_2_{usable[-1]}"


@cache
def local_platform() -> Platform:
    return Platform.parse(sysconfig.get_platform(), local_libc())
