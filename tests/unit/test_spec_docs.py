"""docs/spec.md is generated from the models; regenerate it when a field changes."""

from __future__ import annotations

from pathlib import Path

from shipyard.spec.docs import render
from shipyard.spec.model import Spec

DOC = Path(__file__).resolve().parents[2] / "docs" / "spec.md"


def test_docs_match_the_models() -> None:
    assert DOC.read_text() == render(), "run: .venv/bin/python scripts/gen_spec_docs.py"


def test_every_top_level_key_is_documented() -> None:
    text = render()
    for name in Spec.model_fields:
        if name not in ("server", "tests", "healthcheck", "build", "targets"):
            assert f"| `{name}` |" in text
