"""Regenerate docs/spec.md from the spec models: .venv/bin/python scripts/gen_spec_docs.py"""

from pathlib import Path

from shipyard.spec.docs import render

target = Path(__file__).resolve().parent.parent / "docs" / "spec.md"
target.parent.mkdir(exist_ok=True)
target.write_text(render())
print(f"wrote {target}")
