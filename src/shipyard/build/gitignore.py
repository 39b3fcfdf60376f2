"""A project's .gitignore, read where git is not there to apply it (not a work tree)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    anchored: bool  # matched against the whole relative path, else against the name

    def matches(self, path: PurePosixPath, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        return self.regex.match(path.as_posix() if self.anchored else path.name) is not None


@dataclass(frozen=True)
class Gitignore:
    """The rules of the .gitignore at the root of a project that is not a git work tree:
    globs ('*', '?', '[...]', '**'), patterns anchored by a '/', directory-only ones ending
    in '/', and '!' exceptions; the last rule that matches decides. In a work tree git's own
    rules apply; these are their common part."""

    rules: tuple[_Rule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Gitignore:
        rules = []
        for raw in text.splitlines():
            line = raw.rstrip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            line = line[1:] if negate or line.startswith("\\") else line
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            anchored = "/" in line
            line = line.lstrip("/")
            if line:
                rules.append(_Rule(_glob(line), negate, dir_only, anchored))
        return cls(tuple(rules))

    def ignores(self, path: PurePosixPath, is_dir: bool) -> bool:
        """The last rule that matches decides (a file under an ignored directory is never
        seen: the walk does not enter it)."""
        ignored = False
        for rule in self.rules:
            if rule.matches(path, is_dir):
                ignored = not rule.negate
        return ignored


def _glob(pattern: str) -> re.Pattern[str]:
    """A gitignore glob as a regex: '*' and '?' stop at '/', '**' does not."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        char = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 1
        elif char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out) + r"\Z")
