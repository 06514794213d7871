"""Business rules on candidates: exclusions, diversity (MMR) and quotas per kind."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from convrec.knowledge.items import Article, Product
from convrec.types import Message


@dataclass
class Candidate:
    """An item being considered, with its relevance and vector."""

    item: Article | Product
    score: float
    vector: np.ndarray


def linked_item_ids(turns: Iterable[Message], items: Iterable[Article | Product]) -> set[str]:
    """Items the conversation already links or names: by URL, or by an id that could not be
    an ordinary word (it holds a digit, '-' or '_') appearing as a whole token."""
    text = "\n".join(t.content for t in turns)
    words = set(re.findall(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*", text))
    linked = set()
    for item in items:
        id_like = any(not ch.isalpha() for ch in item.id)
        if (item.url and item.url in text) or (id_like and item.id in words):
            linked.add(item.id)
    return linked


def mmr(candidates: Sequence[Candidate], k: int, lam: float,
        max_per_kind: int | None = None) -> list[Candidate]:
    """Maximal marginal relevance: each pick trades relevance against redundancy."""
    chosen: list[Candidate] = []
    per_kind: dict[str, int] = {}
    pool = list(candidates)
    while pool and len(chosen) < k:
        best, best_value = None, -np.inf
        for cand in pool:
            if max_per_kind is not None and per_kind.get(cand.item.kind, 0) >= max_per_kind:
                continue
            redundancy = max((float(cand.vector @ c.vector) for c in chosen), default=0.0)
            value = lam * cand.score - (1 - lam) * redundancy
            if value > best_value:
                best, best_value = cand, value
        if best is None:
            break
        chosen.append(best)
        per_kind[best.item.kind] = per_kind.get(best.item.kind, 0) + 1
        pool.remove(best)
    return chosen
