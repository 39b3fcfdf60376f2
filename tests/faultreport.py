"""Rows of the fault table (RELIABILITY.md, written by bench/reliability.py).

A fault test calls `record(...)` once per case it tried; when the run collects them
($SHIPYARD_FAULT_REPORT names a file), each becomes a JSON line there. Tests outside such a
run write nothing. Imported by plain name: tests/ is on sys.path (its conftest lives there).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

REPORT_ENV = "SHIPYARD_FAULT_REPORT"


def error_message(stderr: str) -> str:
    """The error's paragraph as the user reads it, without the progress lines before it."""
    _, found, rest = stderr.partition("error: ")
    return " ".join((found + rest).split())


def record(
    case: str,
    *,
    target: str,
    exit_code: int,
    message: str,
    failed_requests: int | None = None,
    requests: int | None = None,
    data_lost: str = "none",
    serving_after: str = "",
) -> None:
    path = os.environ.get(REPORT_ENV)
    if not path:
        return
    row = {
        "case": case,
        "target": target,
        "exit_code": exit_code,
        "message": message,
        "failed_requests": failed_requests,
        "requests": requests,
        "data_lost": data_lost,
        "serving_after": serving_after,
    }
    with Path(path).open("a") as out:
        out.write(json.dumps(row) + "\n")
