"""A deploy plan as data: what `deploy` would do on one host, and the diff of every file it
would write. Pure: the facts it is made from are read beforehand (host/planning.py)."""

from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict, Field

MASK = "***"
NO_NEWLINE = "\\ No newline at end of file"


class FileChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    diff: str  # unified diff; empty when unchanged


class PlannedStage(BaseModel):
    name: str
    notes: list[str] = Field(default_factory=list)
    steps: list[str] = Field(default_factory=list)
    files: list[FileChange] = Field(default_factory=list)


class Plan(BaseModel):
    app: str
    host: str
    release: str
    stages: list[PlannedStage]


def file_change(
    path: str, before: bytes | None, after: bytes, was: str | None = None
) -> FileChange:
    """The change from what `path` holds now (None: absent) to `after`; `was`: `before` is
    what another file holds (the one the new file takes over from)."""
    old = (before or b"").decode(errors="replace")
    new = after.decode(errors="replace")
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{was or path} (now)",
        tofile=f"{path} (new)",
    )
    # A line with no line boundary is a file's last, without its newline: marked as diff -u
    # does, instead of running into the line after it.
    diff = "".join(
        line if line.splitlines() != [line] else f"{line}\n{NO_NEWLINE}\n" for line in lines
    )
    return FileChange(path=path, diff=diff)


def masked_env(env: dict[str, str], secret_keys: set[str]) -> dict[str, str]:
    """The environment with the value of every config key (secrets) masked."""
    return {key: (MASK if key in secret_keys else value) for key, value in env.items()}


def build_stages(tests: str | None, release: str, built: bool) -> list[PlannedStage]:
    """The stages run on the deploying machine: the test gate and the build."""
    return [
        PlannedStage(
            name="test", notes=[f"run '{tests}' in a clean venv" if tests else "tests skipped"]
        ),
        PlannedStage(
            name="build",
            notes=[
                f"artifact {release}: "
                + (
                    "already built, reused"
                    if built
                    else "build the app wheel, fill the wheel store, collect static"
                )
            ],
        ),
    ]
