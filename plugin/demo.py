"""``convrec demo``: ingest Fernhill Supply and replay its support chats, showing what would
be surfaced after each user turn, and why."""

from __future__ import annotations

import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from convrec.world import conversations, item_paths

WIDTH = 88


def _wrap(text: str, first: str, rest: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=WIDTH, initial_indent=first,
                         subsequent_indent=rest)


def run_demo(workspace: Path | None = None, keep: bool = False, only: str | None = None,
             out=None) -> int:
    from convrec.recommender import Recommender

    out = out or sys.stdout
    temporary = workspace is None
    root = Path(tempfile.mkdtemp(prefix="convrec-demo-")) if temporary else Path(workspace)
    try:
        rec = Recommender(workspace=root)
        print("convrec demo: Fernhill Supply, a fictional store (help centre + catalogue)\n",
              file=out)
        start = time.perf_counter()
        report = rec.ingest(item_paths())
        print(f"Ingested {rec.index.count()} items in {time.perf_counter() - start:.1f}s "
              f"({report.summary()})", file=out)
        print(f"Workspace: {root}{' (temporary)' if temporary and not keep else ''}\n",
              file=out)

        chats = [c for c in conversations() if only in (None, c.id)]
        if not chats:
            print(f"no conversation with id {only!r}", file=sys.stderr)
            return 2
        for chat in chats:
            rec.forget_user(chat.user_id)  # a replay starts from a clean history
            print(f"━━ {chat.title} ({chat.id}) " + "━" * max(0, WIDTH - len(chat.title) - 10),
                  file=out)
            for n, message in enumerate(chat.messages):
                who = "user " if message.role == "user" else "agent"
                print(_wrap(message.content, f" {who} │ ", "       │ "), file=out)
                if message.role != "user":
                    continue
                result = rec.suggest(chat.messages[: n + 1], user_id=chat.user_id,
                                     conversation_id=chat.id)
                if not result.surfaced:
                    print(_wrap(f"(stays silent: {result.note})", "       ↳ ", "         "),
                          file=out)
                    continue
                for s in result.suggestions:
                    price = f" · {s.price:.2f} {s.currency}" if s.price is not None else ""
                    print(f"       ↳ [{s.kind}] {s.title}{price}  relevance {s.score:.2f}",
                          file=out)
                    if s.url:
                        print(f"           {s.url}", file=out)
                    print(_wrap(s.reason, "           why: ", "                "), file=out)
            print(file=out)
        print("Suggestions already shown in a conversation are not repeated; a suggestion "
              "is surfaced only when its\ncalibrated relevance clears the threshold "
              f"({rec.settings.suggest.threshold:.2f}; setting CONVREC_SUGGEST__THRESHOLD).",
              file=out)
        rec.close()
        return 0
    finally:
        if temporary and not keep:
            shutil.rmtree(root, ignore_errors=True)
