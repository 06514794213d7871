"""convrec: a recommendation plugin for chat agents.

It reads a live conversation (and the user's history) and surfaces the help article or
product that fits, or stays silent when nothing is relevant enough::

    from convrec import Recommender
    rec = Recommender(workspace=".convrec")
    rec.ingest("help-centre/")
    rec.suggest("User: my parcel is a week late").suggestions

Names are imported lazily, so ``import convrec`` does not load torch, chromadb or
sentence-transformers.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Recommender": "convrec.recommender",
    "Settings": "convrec.settings",
    "SuggestSettings": "convrec.settings",
    "Article": "convrec.knowledge.items",
    "Product": "convrec.knowledge.items",
    "Item": "convrec.knowledge.items",
    "parse_item": "convrec.knowledge.items",
    "Message": "convrec.types",
    "Event": "convrec.types",
    "Suggestion": "convrec.types",
    "SuggestionResult": "convrec.types",
    "parse_transcript": "convrec.types",
    "ItemFilter": "convrec.knowledge.index",
    "ItemLoadError": "convrec.knowledge.loaders",
    "load_items": "convrec.knowledge.loaders",
    "ContentEncoder": "convrec.knowledge.encoder",
    "Gate": "convrec.pipeline.gate",
    "Decision": "convrec.pipeline.gate",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from convrec.knowledge.encoder import ContentEncoder
    from convrec.knowledge.index import ItemFilter
    from convrec.knowledge.items import Article, Item, Product, parse_item
    from convrec.knowledge.loaders import ItemLoadError, load_items
    from convrec.recommender import Recommender
    from convrec.settings import Settings, SuggestSettings
    from convrec.types import Event, Message, Suggestion, SuggestionResult, parse_transcript


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convrec' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
