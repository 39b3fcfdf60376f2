"""systemd unit files read back as systemd reads them, for the tests: sections of keys that
may repeat, a template with its drop-ins over it, and the command-line and environment
syntax of ExecStart= and Environment= (quotes with C escapes, `%` specifiers, `$$`).

A reader written here, since systemd's own cannot run without systemd as PID 1; every unit
the tests read also passes `systemd-analyze verify`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

Sections = dict[str, dict[str, list[str]]]
# settings whose assignments add up (every other one: the last assignment wins)
LIST_SETTINGS = {"Environment", "ExecStart", "ReadWritePaths", "After", "WantedBy"}


def parse(text: str) -> Sections:
    """Section -> key -> every value given, in order; an empty value resets the list
    (systemd's rule for list settings such as ExecStart= in a drop-in)."""
    sections: Sections = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a setting outside any section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a setting: {line!r}"
        values = current.setdefault(key.strip(), [])
        if value.strip():
            values.append(value.strip())
        else:
            values.clear()
    return sections


@dataclass
class Unit:
    """One instance's settings: its template with its drop-ins applied in name order."""

    name: str
    instance: str
    sections: Sections = field(default_factory=dict)

    def get(self, section: str, key: str) -> str:
        values = self.sections.get(section, {}).get(key, [])
        assert len(values) == 1, f"{self.name}: {section}.{key} = {values}"
        return self.expand(values[0])

    def all(self, section: str, key: str) -> list[str]:
        return [self.expand(v) for v in self.sections.get(section, {}).get(key, [])]

    def expand(self, value: str) -> str:
        """The specifiers the units use (%i, %n) and `%%`."""
        names = {"i": self.instance, "n": self.name, "%": "%"}
        return re.sub(r"%(.)", lambda m: names[m[1]], value)

    def exec_start(self) -> list[str]:
        """ExecStart= split into argv; `$$` is a literal `$`."""
        (raw,) = self.sections["Service"]["ExecStart"]
        return [_no_variables(self.expand(word)) for word in _words(raw)]

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for raw in self.sections["Service"].get("Environment", []):
            for word in _words(raw):
                key, _, value = self.expand(word).partition("=")
                env[key] = value
        return env


_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


def _words(raw: str) -> list[str]:
    """Words as systemd splits them: apart at whitespace, a word in double or single
    quotes read with C escapes (the ones shipyard writes: \\\\, \\", \\n)."""
    words: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] in " \t":
            i += 1
            continue
        word: list[str] = []
        if raw[i] in "\"'":
            quote = raw[i]
            i += 1
            while raw[i] != quote:
                if raw[i] == "\\":
                    word.append(_ESCAPES[raw[i + 1]])
                    i += 2
                else:
                    word.append(raw[i])
                    i += 1
            i += 1
        else:
            while i < len(raw) and raw[i] not in " \t":
                word.append(raw[i])
                i += 1
        words.append("".join(word))
    return words


def _no_variables(word: str) -> str:
    """`$$` is a literal `$`; any other `$` is a variable systemd would expand (to nothing,
    unset): a unit that has one does not run the command it was rendered from."""

    def literal(found: re.Match[str]) -> str:
        assert found[0] == "$$", f"systemd would expand {found[0]!r} in {word!r}"
        return "$"

    return re.sub(r"\$(\$|\{?\w*)", literal, word)


def load(unit_dir: Path, name: str) -> Unit:
    """`name` (`app-web@blue.service`) from its template and drop-ins in `unit_dir`."""
    prefix, _, rest = name.partition("@")
    instance = rest.removesuffix(".service")
    template = unit_dir / f"{prefix}@.service"
    unit = Unit(name, instance)
    texts = [template.read_text()]
    texts += [p.read_text() for p in sorted((unit_dir / f"{name}.d").glob("*.conf"))]
    for text in texts:
        for section, keys in parse(text).items():
            merged = unit.sections.setdefault(section, {})
            for key, values in keys.items():
                if key in LIST_SETTINGS and values:
                    merged.setdefault(key, []).extend(values)
                else:
                    merged[key] = values[-1:]
    return unit
