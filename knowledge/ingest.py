"""Incremental, idempotent ingest: new and changed items are encoded and upserted, items gone
from a source are removed, unchanged items cost one hash comparison.

What an update needs: the items (from files or Python). Each item's stored ``content_hash``
says whether it changed; the encoder's cache says whether its text must be encoded again (a
changed price re-writes the record but re-uses the vector).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from convrec.knowledge.encoder import ContentEncoder
from convrec.knowledge.index import VectorIndex
from convrec.knowledge.items import Article, Product


@dataclass
class IngestReport:
    """What one ingest did, and how long encoding took against the whole."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    encode_seconds: float = 0.0

    def summary(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, "
                f"{self.unchanged} unchanged, {len(self.removed)} removed; "
                f"{self.encoded} encoded, {self.cache_hits} from cache; {self.seconds:.2f}s")


#: Called as ``progress(advance, total)`` while items are processed.
Progress = Callable[[int, int], None]


def ingest_items(
    items: Sequence[Article | Product],
    index: VectorIndex,
    encoder: ContentEncoder,
    *,
    sources: dict[str, str] | None = None,
    prune_sources: bool = True,
    read_roots: Sequence[str] | None = None,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> IngestReport:
    """Bring the index up to date with ``items``.

    ``sources`` maps item ids to the path they were loaded through. With ``prune_sources``,
    items that a re-read path (``read_roots``, by default every path in ``sources``) no
    longer holds are deleted; items of other paths are left alone.
    """
    start = time.perf_counter()
    report = IngestReport()
    total = len(items)
    sources = sources or {}
    by_tenant: dict[str, list[Article | Product]] = {}
    for item in items:
        by_tenant.setdefault(item.tenant, []).append(item)

    encode_before = encoder.stats.encode_seconds
    for tenant, tenant_items in by_tenant.items():
        stored = index.fingerprints(tenant)
        todo = []
        vector_keys = {item.id: encoder.item_key(item) for item in tenant_items}
        for item in tenant_items:
            old = stored.get(item.id)
            if old is None:
                report.added.append(item.id)
            elif (old.get("content_hash") != item.content_hash()
                  or old.get("vector_key") != vector_keys[item.id]  # e.g. a replaced image
                  or old.get("source", "") != sources.get(item.id, "")):
                report.updated.append(item.id)
            else:
                report.unchanged += 1
                if progress:
                    progress(1, total)
                continue
            todo.append(item)
        for begin in range(0, len(todo), batch_size):
            batch = todo[begin:begin + batch_size]
            hits_before = encoder.stats.cached_items
            vectors = encoder.encode_items(batch)
            hits = encoder.stats.cached_items - hits_before
            report.cache_hits += hits
            report.encoded += len(batch) - hits
            index.upsert(batch, vectors,
                         extra=[{"source": sources.get(i.id, ""), "encoder": encoder.name,
                                 "vector_key": vector_keys[i.id]} for i in batch])
            if progress:
                progress(len(batch), total)
        if prune_sources and (sources or read_roots):
            seen = {item.id for item in tenant_items}
            read_sources = set(read_roots) if read_roots is not None else set(sources.values())
            gone = [item_id for item_id, meta in stored.items()
                    if meta.get("source") in read_sources and item_id not in seen]
            if gone:
                index.delete(gone, tenant=tenant)
                report.removed.extend(gone)
    report.encode_seconds = encoder.stats.encode_seconds - encode_before
    report.seconds = time.perf_counter() - start
    return report
