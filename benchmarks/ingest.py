"""Ingest cost against raw encoding, on the example world (or any item paths).

    python benchmarks/ingest.py [--out FILE] [PATH ...]

In one run: the raw encoder's throughput on the items' encoding texts; a cold ingest into a
fresh Chroma workspace (same texts, so the difference is everything that is not encoding:
loading, hashing, diffing, Chroma writes); and a re-ingest of the unchanged items (which must
encode nothing). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    from convrec.knowledge.cache import EmbeddingCache
    from convrec.knowledge.encoder import ContentEncoder
    from convrec.knowledge.loaders import load_items
    from convrec.recommender import Recommender
    from convrec.world import item_paths

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="best of N for raw encoding")
    args = parser.parse_args(argv)
    paths = args.paths or item_paths()

    items = load_items(paths).items
    encoder = ContentEncoder()
    # The very texts ingest encodes (an article's title and body are two texts).
    texts = [text for item in items for text in encoder.item_texts(item)]
    encoder.encode_queries(["warm-up"] * 8)

    raw = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        encoder.model.encode([{"text": t} for t in texts], batch_size=encoder.batch_size,
                             normalize_embeddings=True, show_progress_bar=False)
        raw.append(time.perf_counter() - start)
    raw_s = min(raw)

    with tempfile.TemporaryDirectory() as root:
        runs = []
        for _ in range(args.repeat):
            ws = Path(tempfile.mkdtemp(dir=root))
            rec = Recommender(workspace=ws, encoder=encoder.with_cache(
                EmbeddingCache(ws / "embeddings.sqlite")))
            _ = rec.index  # open Chroma before timing, as a server would have it open
            start = time.perf_counter()
            cold = rec.ingest(paths)
            runs.append((time.perf_counter() - start, cold, rec, ws))
        cold_s, cold, rec, ws = min(runs, key=lambda r: r[0])
        start = time.perf_counter()
        again = rec.ingest(paths)
        reingest_s = time.perf_counter() - start

    result = {
        "items": len(items),
        "texts_encoded": len(texts),
        "raw_encode_seconds": round(raw_s, 3),
        "raw_items_per_s": round(len(items) / raw_s, 1),
        "ingest_seconds": round(cold_s, 3),
        "ingest_items_per_s": round(len(items) / cold_s, 1),
        "ingest_encode_seconds": round(cold.encode_seconds, 3),
        "overhead_vs_raw": round(cold_s / raw_s - 1, 3),
        "non_encoding_share_in_ingest": round(1 - cold.encode_seconds / cold_s, 3),
        "encoded_cold": cold.encoded,
        "reingest_seconds": round(reingest_s, 3),
        "reingest_encoded": again.encoded,
        "reingest_unchanged": again.unchanged,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    print(f"{'items':<28}{result['items']}")
    print(f"{'raw encode':<28}{raw_s:.2f}s  ({result['raw_items_per_s']} items/s)")
    print(f"{'cold ingest':<28}{cold_s:.2f}s  ({result['ingest_items_per_s']} items/s)")
    print(f"{'ingest overhead vs raw':<28}{100 * result['overhead_vs_raw']:.1f}%")
    print(f"{'non-encoding share':<28}{100 * result['non_encoding_share_in_ingest']:.1f}%"
          "  (of the cold ingest, measured inside it)")
    print(f"{'re-ingest unchanged':<28}{reingest_s:.2f}s  "
          f"({again.encoded} encoded, {again.unchanged} unchanged)")
    print(f"{'peak RSS':<28}{result['peak_rss_mb']} MB")
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
