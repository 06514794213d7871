"""The README's Python quick start, run as written (in a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks(heading: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_python_quick_start_runs(tmp_path, monkeypatch, minilm):
    import convrec.knowledge.encoder as encoder_module

    # Share the session's loaded MiniLM (the code path is unchanged: the same class loads it).
    original = encoder_module.ContentEncoder._load
    monkeypatch.setattr(encoder_module.ContentEncoder, "_load",
                        lambda self: minilm.model if self._model_ref is None else original(self))
    monkeypatch.chdir(tmp_path)
    (block,) = python_blocks("Quick start (Python)")
    exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})
    assert (tmp_path / ".convrec-quickstart").is_dir()
