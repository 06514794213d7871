"""Suggestions for a chat transcript file, from Python. The same from the command line:

    WORLD=$(python -c 'from convrec.world import world_dir; print(world_dir())')
    convrec --workspace WS ingest "$WORLD/articles" "$WORLD/products.jsonl"
    convrec --workspace WS suggest --transcript examples/transcript.txt

    python examples/transcript_suggest.py [WORKSPACE] [TRANSCRIPT]

A transcript is plain text ("User: ..." / "Assistant: ..." lines) or JSON messages.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from convrec import Recommender, SuggestionResult
from convrec.world import item_paths

HERE = Path(__file__).parent


def suggest_for(rec: Recommender, transcript: Path) -> SuggestionResult:
    return rec.suggest(transcript.read_text(encoding="utf-8"), k=3)


def main(workspace: str | None = None, transcript: str | None = None) -> None:
    rec = Recommender(workspace=workspace or tempfile.mkdtemp(prefix="convrec-"))
    rec.ingest(item_paths())
    result = suggest_for(rec, Path(transcript or HERE / "transcript.txt"))
    if not result.surfaced:
        print(f"(nothing to suggest) {result.note}")
    for s in result.suggestions:
        print(f"[{s.kind}] {s.title}  {s.url}\n    why: {s.reason}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
