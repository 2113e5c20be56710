"""Write docs/features.md from the feature registry."""

from __future__ import annotations

from pathlib import Path

from features.docs import render_markdown

if __name__ == "__main__":
    target = Path(__file__).resolve().parents[1] / "docs" / "features.md"
    target.write_text(render_markdown(), encoding="utf-8")
    print(f"wrote {target}")
