"""Turn a transcript into a query: which turns count, and how much each weighs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convrec.settings import SuggestSettings
from convrec.types import Message


@dataclass
class ConversationQuery:
    """The turns read, their vectors and weights, and the mixed query vector."""

    turns: list[Message]
    vectors: np.ndarray  # [T, dim], normalised
    weights: np.ndarray  # [T], sums to 1
    vector: np.ndarray  # [dim], normalised weighted mean
    focus: np.ndarray | None  # the last user turn alone, if any


def readable_turns(messages: list[Message], max_turns: int) -> list[Message]:
    """The last ``max_turns`` user and assistant turns with text (system and tool dropped)."""
    turns = [m for m in messages if m.role in ("user", "assistant") and m.content.strip()]
    return turns[-max_turns:]


def turn_weights(turns: list[Message], settings: SuggestSettings) -> np.ndarray:
    """Recent turns above old ones, user turns above assistant turns; sums to 1."""
    n = len(turns)
    weights = np.array([
        (settings.user_weight if turn.role == "user" else settings.assistant_weight)
        * 0.5 ** ((n - 1 - i) / settings.recency_half_life)
        for i, turn in enumerate(turns)
    ], dtype=np.float32)
    total = float(weights.sum())
    return weights / total if total > 0 else np.full(n, 1.0 / max(n, 1), dtype=np.float32)


def build_query(turns: list[Message], vectors: np.ndarray,
                settings: SuggestSettings) -> ConversationQuery:
    weights = turn_weights(turns, settings)
    mixed = (weights[:, None] * vectors).sum(axis=0)
    mixed = mixed / max(float(np.linalg.norm(mixed)), 1e-12)
    user_rows = [i for i, t in enumerate(turns) if t.role == "user"]
    focus = vectors[user_rows[-1]] if user_rows else None
    return ConversationQuery(turns, vectors, weights, mixed.astype(np.float32), focus)
