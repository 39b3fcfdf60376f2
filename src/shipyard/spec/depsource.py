"""Which input the dependency pins come from, and why that one (pure: facts in, choice out)."""

from __future__ import annotations

from dataclasses import dataclass

# The inputs `auto` looks for, in order: a lock first (it holds exact versions), then a
# requirements file, then the dependencies pyproject declares.
AUTO_ORDER: tuple[tuple[str, str], ...] = (
    ("uv.lock", "uv.lock"),
    ("poetry.lock", "poetry.lock"),
    ("requirements.txt", "requirements"),
)


@dataclass(frozen=True)
class DepSource:
    kind: str  # "uv.lock" | "poetry.lock" | "requirements" | "pyproject" | "none"
    file: str  # relative to the project; "" for none
    why: str  # how `init` and errors say it

    @property
    def describe(self) -> str:
        return "no dependencies" if self.kind == "none" else self.file


NO_DEPS = DepSource("none", "", "no uv.lock, poetry.lock, requirements.txt or [project]")


def kind_of(file: str) -> str:
    """The kind of a file named by `build.requirements`."""
    name = file.rsplit("/", 1)[-1]
    if name in ("uv.lock", "poetry.lock"):
        return name
    return "pyproject" if name == "pyproject.toml" else "requirements"


def choose_source(present: set[str], has_project_deps: bool) -> DepSource:
    """The `auto` choice among the files `present` in the project.

    Args:
        present: which of uv.lock, poetry.lock, requirements.txt the project has.
        has_project_deps: pyproject declares dependencies ([project] or [tool.poetry]).
    """
    found = [(file, kind) for file, kind in AUTO_ORDER if file in present]
    if found:
        file, kind = found[0]
        others = [other for other, _ in found[1:]] + (
            ["pyproject.toml"] if has_project_deps else []
        )
        why = "a lock: exact versions" if kind != "requirements" else "no lock file"
        if others:
            why += f"; preferred over {', '.join(others)}"
        return DepSource(kind, file, why)
    if has_project_deps:
        return DepSource("pyproject", "pyproject.toml", "the dependencies pyproject declares")
    return NO_DEPS
