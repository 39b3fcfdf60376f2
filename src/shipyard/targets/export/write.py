"""Writing a rendered export into its directory: the files as rendered, the secrets' file
0600, never over a directory that holds something else unless told to."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from shipyard.errors import UsageError
from shipyard.spec.model import Spec
from shipyard.targets.export.kubernetes import (
    SECRET_ENV,
    SECRET_EXAMPLE,
    TLS_CERT,
    TLS_KEY,
    Export,
)


@dataclass(frozen=True)
class Written:
    directory: Path
    files: list[str]  # every file written, secret.env included
    resources: list[str]  # the manifests the kustomization lists
    secrets: str  # "stored" (from the target), "kept" (the user's, left), "to fill", "none"
    generated: list[str]  # 'generate' secrets given a new value (names only)
    target: str | None


def secret_values(
    spec: Spec, stored: dict[str, str], target: str, earlier: dict[str, str] | None = None
) -> tuple[dict[str, str], list[str]]:
    """The Secret's values: every variable the target stores (`config set`), and for each
    'generate' secret it lacks, the value an earlier export generated (`earlier`: its
    secret.env), else a new random one. Names only in errors."""
    missing = [
        k for k, how in sorted(spec.secrets.items()) if how == "required" and k not in stored
    ]
    if missing:
        raise UsageError(
            f"target {target} has no value for the required secret(s) {', '.join(missing)}.",
            hint=f"Set them (shipyard config set --target {target} {missing[0]}), or export "
            f"without --target and write secret.env yourself (secret.env.example lists the "
            "names).",
        )
    generated = [
        k for k, how in sorted(spec.secrets.items()) if how == "generate" and k not in stored
    ]
    kept = {k: v for k, v in (earlier or {}).items() if k in generated and v}
    generated = [k for k in generated if k not in kept]
    values = {**stored, **kept, **{key: secrets.token_urlsafe(32) for key in generated}}
    lined = sorted(k for k, v in values.items() if "\n" in v or "\r" in v)
    if lined:
        raise UsageError(
            f"the value of {', '.join(lined)} (target {target}) holds a line break, which "
            "kustomize's env files cannot carry.",
            hint="Store it without line breaks (base64, say), or write secret.env yourself.",
        )
    return values, generated


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=value lines of an earlier secret.env (none: empty), as kustomize reads them."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read {path}: {err}.") from None
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            found[key.strip()] = value
    return found


def write_export(export: Export, directory: Path, force: bool) -> tuple[list[str], str]:
    """Write `export` into `directory`; returns the files written and what became of the
    secrets' file."""
    _check_free(directory, force)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name in _stale(directory, export):
            (directory / name).unlink()
        for name, text in export.files.items():
            _write(directory / name, text, 0o644)
            written.append(name)
        if export.certificate is not None:
            _write(directory / TLS_CERT, export.certificate.chain, 0o644)
            _write(directory / TLS_KEY, export.certificate.key, 0o600)
            written += [TLS_CERT, TLS_KEY]
        secret = directory / SECRET_ENV
        if export.secret_file is not None:
            _write(secret, export.secret_file, 0o600)
            written.append(SECRET_ENV)
            state = "stored"
        elif secret.is_file():
            secret.chmod(0o600)
            state = "kept"
        else:
            state = "to fill" if SECRET_EXAMPLE in export.files else "none"
    except OSError as err:
        raise UsageError(
            f"cannot write the export into {directory}: {err.strerror or err}.",
            hint="Choose another directory with -o DIR.",
        ) from None
    return written, state


def _check_free(directory: Path, force: bool) -> None:
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} is a file, not a directory.", hint="Choose -o DIR.")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise UsageError(
            f"{directory} is not empty.",
            hint="Pass --force to write over shipyard's files there (a secret.env of yours "
            "is kept unless the target stores the values), or choose another -o DIR.",
        )


# What an earlier export may have written that this one does not: left, kustomize would
# not read it, but a reader of the directory would.
_OURS = (
    "deployment-",
    "hpa.yaml",
    "pvc.yaml",
    "job-release.yaml",
    "nginx.conf",
    SECRET_EXAMPLE,
    TLS_CERT,
    TLS_KEY,
)


def _stale(directory: Path, export: Export) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(
        path.name
        for path in directory.iterdir()
        if path.is_file()
        and path.name.startswith(_OURS)
        and path.name not in export.files
        and not (export.certificate and path.name in (TLS_CERT, TLS_KEY))
    )


def _write(path: Path, text: str, mode: int) -> None:
    """A file made with `mode` from the start: a secret is never readable by others, even
    for a moment."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    os.fchmod(fd, mode)  # an older temp file kept its mode
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)
