"""Where items and their vectors live: the ``VectorIndex`` protocol and its implementations.

``ChromaIndex`` is the real store: ``persistent_index(path)`` keeps it in the workspace
folder, ``http_index(url)`` talks to a Chroma server (``chroma run``) when one machine is not
enough. ``MemoryIndex`` is a plain-Python reference with identical semantics, used to check
the Chroma filters and handy for tiny in-process catalogues.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from convrec.knowledge.items import ITEM_ADAPTER, Article, ItemKind, Product

DEFAULT_COLLECTION = "convrec-items"
#: Chroma accepts about 5,400 records per call; stay well below.
_BATCH = 2000


class ItemFilter(BaseModel):
    """Metadata conditions a candidate item must meet. ``None`` means no condition."""

    model_config = ConfigDict(extra="forbid")

    tenant: str = "default"
    kinds: list[ItemKind] | None = None
    in_stock: bool | None = None
    locale: str | None = None
    category: str | None = None
    price_min: float | None = Field(default=None, ge=0)
    price_max: float | None = Field(default=None, ge=0)
    tags_any: list[str] | None = None
    exclude_ids: list[str] = Field(default_factory=list)

    def matches(self, meta: dict[str, Any], item_id: str) -> bool:
        """The plain-Python meaning of this filter (the reference for every index)."""
        if meta.get("tenant") != self.tenant or item_id in self.exclude_ids:
            return False
        if self.kinds is not None and meta.get("kind") not in self.kinds:
            return False
        # Conditions on product or article fields exclude items that lack the field.
        for name in ("in_stock", "locale", "category"):
            wanted = getattr(self, name)
            if wanted is not None and meta.get(name) != wanted:
                return False
        price = meta.get("price")
        if self.price_min is not None and (price is None or price < self.price_min):
            return False
        if self.price_max is not None and (price is None or price > self.price_max):
            return False
        return not (self.tags_any and not set(self.tags_any) & set(meta.get("tags") or []))


@dataclass
class Hit:
    """An item found by a query, with its cosine similarity and stored vector."""

    item: Article | Product
    score: float
    vector: np.ndarray
    meta: dict[str, Any]


@dataclass
class StoredItem:
    item: Article | Product
    vector: np.ndarray
    meta: dict[str, Any]


@runtime_checkable
class VectorIndex(Protocol):
    """The small verb set every item store offers."""

    def upsert(self, items: Sequence[Article | Product], vectors: np.ndarray,
               extra: Sequence[dict[str, Any]] | None = None) -> None: ...

    def delete(self, ids: Sequence[str], tenant: str = "default") -> None: ...

    def get(self, ids: Sequence[str], tenant: str = "default") -> list[StoredItem]: ...

    def query(self, vector: np.ndarray, k: int, where: ItemFilter) -> list[Hit]: ...

    def fingerprints(self, tenant: str = "default") -> dict[str, dict[str, Any]]:
        """Every item id of the tenant -> its stored metadata (hash, source, ...)."""
        ...

    def count(self, tenant: str | None = None) -> int: ...


def _record_id(tenant: str, item_id: str) -> str:
    # Tenants share a collection; ids are unique per tenant.
    return f"{tenant}\x1f{item_id}"


def item_metadata(item: Article | Product) -> dict[str, Any]:
    """Flat metadata for filtering, plus the full record as JSON."""
    meta: dict[str, Any] = {
        "kind": item.kind,
        "tenant": item.tenant,
        "item_id": item.id,
        "title": item.title,
        "content_hash": item.content_hash(),
        "item": item.model_dump_json(exclude_none=True),
    }
    if item.tags:
        meta["tags"] = list(item.tags)
    if isinstance(item, Product):
        meta["in_stock"] = item.in_stock
        if item.price is not None:
            meta["price"] = float(item.price)
        for name in ("category", "brand"):
            if getattr(item, name):
                meta[name] = getattr(item, name)
    else:
        meta["locale"] = item.locale
        if item.section:
            meta["section"] = item.section
        if item.updated_at:
            meta["updated_at"] = item.updated_at.timestamp()
    return meta


def _item_from_meta(meta: dict[str, Any]) -> Article | Product:
    return ITEM_ADAPTER.validate_python(json.loads(meta["item"]))


# ---------------------------------------------------------------------------------------------
class MemoryIndex:
    """The reference index: exact cosine search and Python filters over a dict."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}

    def upsert(self, items, vectors, extra=None) -> None:
        for i, item in enumerate(items):
            meta = item_metadata(item) | (dict(extra[i]) if extra else {})
            self._rows[_record_id(item.tenant, item.id)] = (
                np.asarray(vectors[i], dtype=np.float32), meta)

    def delete(self, ids, tenant="default") -> None:
        for item_id in ids:
            self._rows.pop(_record_id(tenant, item_id), None)

    def get(self, ids, tenant="default") -> list[StoredItem]:
        found = []
        for item_id in ids:
            row = self._rows.get(_record_id(tenant, item_id))
            if row:
                found.append(StoredItem(_item_from_meta(row[1]), row[0], row[1]))
        return found

    def query(self, vector, k, where) -> list[Hit]:
        query = _unit(vector)
        scored = [
            (float(_unit(vec) @ query), vec, meta)
            for vec, meta in self._rows.values()
            if where.matches(meta, meta["item_id"])
        ]
        scored.sort(key=lambda row: -row[0])
        return [Hit(_item_from_meta(m), s, v, m) for s, v, m in scored[:k]]

    def fingerprints(self, tenant="default") -> dict[str, dict[str, Any]]:
        return {m["item_id"]: m for _, m in self._rows.values() if m["tenant"] == tenant}

    def count(self, tenant=None) -> int:
        return sum(1 for _, m in self._rows.values() if tenant is None or m["tenant"] == tenant)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


# ---------------------------------------------------------------------------------------------
def _chroma():
    try:
        import chromadb
        from chromadb.config import Settings
    except ImportError as exc:  # pragma: no cover - core dependency
        raise ImportError("The Chroma index needs chromadb: pip install chromadb") from exc
    return chromadb, Settings


def persistent_index(path: str | Path, collection: str = DEFAULT_COLLECTION) -> ChromaIndex:
    """A Chroma index stored in a folder (the embedded default)."""
    chromadb, settings = _chroma()
    Path(path).mkdir(parents=True, exist_ok=True)
    client = chromadb.PersistentClient(path=str(path),
                                       settings=settings(anonymized_telemetry=False))
    return ChromaIndex(client, collection)


def http_index(url: str, collection: str = DEFAULT_COLLECTION) -> ChromaIndex:
    """A Chroma index on a Chroma server, e.g. ``http://127.0.0.1:8000``."""
    from urllib.parse import urlparse

    chromadb, settings = _chroma()
    parsed = urlparse(url)
    client = chromadb.HttpClient(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or (443 if parsed.scheme == "https" else 8000),
        ssl=parsed.scheme == "https",
        settings=settings(anonymized_telemetry=False),
    )
    return ChromaIndex(client, collection)


class ChromaIndex:
    """Items in one Chroma collection (cosine space, our own embeddings, tenant in metadata)."""

    def __init__(self, client: Any, collection: str = DEFAULT_COLLECTION):
        if not 3 <= len(collection) <= 512:
            raise ValueError("Chroma collection names need 3 to 512 characters")
        self.client = client
        self.collection = client.get_or_create_collection(
            collection,
            embedding_function=None,  # never let Chroma download its default model
            configuration={"hnsw": {"space": "cosine"}},
        )

    def upsert(self, items, vectors, extra=None) -> None:
        vectors = np.asarray(vectors, dtype=np.float32)
        for start in range(0, len(items), _BATCH):
            chunk = items[start:start + _BATCH]
            metas = [
                item_metadata(item) | (dict(extra[start + i]) if extra else {})
                for i, item in enumerate(chunk)
            ]
            self.collection.upsert(
                ids=[_record_id(item.tenant, item.id) for item in chunk],
                embeddings=vectors[start:start + len(chunk)],
                metadatas=metas,
            )

    def delete(self, ids, tenant="default") -> None:
        ids = [_record_id(tenant, i) for i in ids]
        for start in range(0, len(ids), _BATCH):
            self.collection.delete(ids=ids[start:start + _BATCH])

    def get(self, ids, tenant="default") -> list[StoredItem]:
        if not ids:
            return []
        found: dict[str, StoredItem] = {}
        record_ids = [_record_id(tenant, i) for i in ids]
        for start in range(0, len(record_ids), _BATCH):
            got = self.collection.get(ids=record_ids[start:start + _BATCH],
                                      include=["metadatas", "embeddings"])
            for meta, vec in zip(got["metadatas"], got["embeddings"], strict=True):
                found[meta["item_id"]] = StoredItem(
                    _item_from_meta(meta), np.asarray(vec, dtype=np.float32), dict(meta))
        return [found[i] for i in ids if i in found]

    def query(self, vector, k, where) -> list[Hit]:
        if k <= 0:
            return []
        total = self.collection.count()
        if total == 0:
            return []
        # Excluded ids are filtered here, so fetch that many more.
        n = min(total, k + len(where.exclude_ids))
        result = self.collection.query(
            query_embeddings=np.asarray(vector, dtype=np.float32)[None, :],
            n_results=n,
            where=chroma_where(where),
            include=["metadatas", "distances", "embeddings"],
        )
        hits = []
        for meta, dist, vec in zip(result["metadatas"][0], result["distances"][0],
                                   result["embeddings"][0], strict=True):
            if meta["item_id"] in where.exclude_ids:
                continue
            hits.append(Hit(_item_from_meta(meta), 1.0 - float(dist),
                            np.asarray(vec, dtype=np.float32), dict(meta)))
        return hits[:k]

    def fingerprints(self, tenant="default") -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            got = self.collection.get(where={"tenant": tenant}, include=["metadatas"],
                                      limit=_BATCH, offset=offset)
            for meta in got["metadatas"]:
                out[meta["item_id"]] = dict(meta)
            if len(got["ids"]) < _BATCH:
                return out
            offset += _BATCH

    def count(self, tenant=None) -> int:
        if tenant is None:
            return int(self.collection.count())
        return len(self.fingerprints(tenant))


def chroma_where(where: ItemFilter) -> dict[str, Any]:
    """The Chroma ``where`` clause equal to ``ItemFilter.matches`` (ids aside)."""
    clauses: list[dict[str, Any]] = [{"tenant": where.tenant}]
    if where.kinds is not None:
        clauses.append({"kind": {"$in": list(where.kinds)}})
    for name in ("in_stock", "locale", "category"):
        value = getattr(where, name)
        if value is not None:
            clauses.append({name: value})
    if where.price_min is not None:
        clauses.append({"price": {"$gte": where.price_min}})
    if where.price_max is not None:
        clauses.append({"price": {"$lte": where.price_max}})
    if where.tags_any:
        tag_clauses = [{"tags": {"$contains": tag}} for tag in where.tags_any]
        clauses.append(tag_clauses[0] if len(tag_clauses) == 1 else {"$or": tag_clauses})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
