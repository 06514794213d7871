"""The example world: Fernhill Supply, a fictional store's help centre, catalogue and chats.

It ships inside the package so ``convrec demo`` works after a plain ``pip install``.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel, Field

from convrec.types import Message


class Conversation(BaseModel):
    """A scripted support chat and what a good plugin should surface after its last turn."""

    id: str
    title: str
    user_id: str
    messages: list[Message]
    expect_first: str | None = None
    note: str = ""
    tags: list[str] = Field(default_factory=list)


def world_dir() -> Path:
    """Folder of the world's files."""
    return Path(str(files("convrec.world")))


def item_paths() -> list[Path]:
    """The article folder and the product file, ready for ``Recommender.ingest``."""
    root = world_dir()
    return [root / "articles", root / "products.jsonl"]


def conversations() -> list[Conversation]:
    """The scripted support chats."""
    raw = json.loads((world_dir() / "conversations.json").read_text(encoding="utf-8"))
    return [Conversation.model_validate(c) for c in raw]
