"""A release artifact as a host reads it: its manifest, and where its files are.

The deploying machine builds it (build/artifact.py); hosts and the local target install it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from shipyard import __version__

MANIFEST = "manifest.json"
LOCK = "requirements.lock"
SPEC = "spec.json"
TREE = "src"  # a source-tree artifact's copy of the project's files


@dataclass(frozen=True)
class WheelRef:
    file: str
    sha256: str


@dataclass(frozen=True)
class Manifest:
    id: str
    app: str
    created: str
    python: str
    source_sha256: str
    lock_sha256: str
    git_sha: str
    app_wheel: WheelRef | None  # None: the app is its source tree, in TREE
    wheels: list[WheelRef] = field(default_factory=list)
    static: dict[str, str] = field(default_factory=dict)  # URL prefix -> dir in the artifact
    shipyard: str = __version__
    platform: str = ""  # "linux-aarch64 (glibc 2.36)" when built for another platform
    tree: dict[str, str] = field(default_factory=dict)  # path in TREE -> sha256

    @property
    def is_tree(self) -> bool:
        """The release runs the project's files in place, from its copy of the tree."""
        return self.app_wheel is None

    @property
    def holds(self) -> str:
        """What the release runs, as progress notes say it."""
        if self.app_wheel is None:
            return f"the source tree ({len(self.tree)} files)"
        return f"the wheel {self.app_wheel.file}"

    @property
    def version(self) -> str:
        """The app wheel's version; a tree has none of its own."""
        return self.app_wheel.file.split("-")[1] if self.app_wheel else ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw: dict[str, Any] = json.loads(text)
        raw["app_wheel"] = WheelRef(**raw["app_wheel"]) if raw["app_wheel"] else None
        raw["wheels"] = [WheelRef(**w) for w in raw["wheels"]]
        return cls(**raw)


@dataclass(frozen=True)
class Artifact:
    path: Path
    manifest: Manifest
    reused: bool

    @property
    def id(self) -> str:
        return self.manifest.id


def load_artifact(path: Path) -> Artifact:
    return Artifact(path, Manifest.from_json((path / MANIFEST).read_text()), reused=True)


def wheel_store(cache: Path) -> Path:
    return cache / "wheels"
