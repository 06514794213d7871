"""Why an item was suggested: the turn (or past item) that pulled it up."""

from __future__ import annotations

import numpy as np

from convrec.knowledge.items import Article, Product
from convrec.types import Message


def _clip(text: str, chars: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1].rsplit(" ", 1)[0] + "…"


def explain(item: Article | Product, vector: np.ndarray, turns: list[Message],
            turn_vectors: np.ndarray, weights: np.ndarray) -> str:
    """One line naming the turn that contributes most to the item's score."""
    contributions = weights * (turn_vectors @ vector)
    best = int(np.argmax(contributions))
    who = "you said" if turns[best].role == "user" else "the agent said"
    what = "Article" if item.kind == "article" else "Product"
    detail = ""
    if isinstance(item, Product):
        stock = "in stock" if item.in_stock else "out of stock"
        price = f"{item.price:.2f} {item.currency}, " if item.price is not None else ""
        detail = f" ({price}{stock})"
    return f'{what} matching what {who}: "{_clip(turns[best].content)}"{detail}'
