"""FAQ benchmark: does ``Recommender.suggest`` surface the right help article, or stay quiet?

    python benchmarks/faq.py --kb /work/shared/data/covid-faq/faq_covidbert.csv \
        --queries benchmarks/data/faq_dev_queries.jsonl --out /tmp/faq.json

The knowledge base is a CSV with ``question,answer,link[,lang]`` columns (deepset's COVID FAQ):
each English row becomes an ``Article`` (question = title, answer = body, link = url). The
queries are JSONL lines ``{"conversation": [{"role": ..., "content": ...}, ...],
"expected": "<FAQ question text>"}``; an empty ``expected`` marks a conversation that should
surface nothing.

Everything goes through the plugin's real path: the articles are ingested into an index
(``MemoryIndex`` by default, ``--chroma DIR`` for the persistent Chroma store) and each
conversation is passed to ``Recommender.suggest(..., k=10, log=False)`` with the default
settings, so turn weighting, the gate, the rules and MMR all apply. An on-topic query counts
as a hit at rank r when the r-th surfaced suggestion's title is the expected question
(whitespace- and case-folded; duplicate questions in the KB are all accepted); a silent answer is a
miss. ``false_surface_rate`` is the share of off-topic conversations where something was
surfaced. The ``ungated`` section repeats the ranking with the gate open (threshold 0), which
separates retrieval quality from the gate's decisions.

Item representations (``--variant``):

* ``default``: articles as the plugin embeds them (title and body encoded apart and mixed,
  ``ContentEncoder``'s ``title_weight``).
* ``title``: articles ingested with an empty body (title-only vectors).
* ``fused``: one vector per article, ``normalise(a * v(title) + (1 - a) * v(body))``, ``a`` =
  ``--title-weight``; title and body are encoded separately by the plugin's encoder and the
  vectors are upserted into the index directly. This is what a "title/body fusion" option of
  the encoder would store.
* ``all``: run the three and report each (the JSON's top level is ``fused``).

The data's licence forbids redistribution: this script reads it from where it lies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

KS = (1, 3)
VARIANTS = ("default", "title", "fused")


def norm(text: str) -> str:
    return " ".join((text or "").split())


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def load_kb(path: str | Path, lang: str = "en"):
    """English FAQ rows as Articles (question = title, answer = body, link = url)."""
    from convrec.knowledge.items import Article

    articles = []
    with open(path, encoding="utf-8", newline="") as fh:
        for row_no, row in enumerate(csv.DictReader(fh), 1):
            if lang and (row.get("lang") or lang).strip() != lang:
                continue
            question, answer = norm(row.get("question", "")), (row.get("answer") or "").strip()
            if not question:
                continue
            link = norm(row.get("link", "")) or None
            articles.append(Article(id=f"faq-{row_no}", title=question, body=answer, url=link,
                                    locale=lang or "en"))
    return articles


@dataclass
class Query:
    conversation: list[dict]
    expected: str  # "" = off-topic: nothing should surface


def missing_from_kb(queries: Sequence[Query], articles) -> list[str]:
    """Expected questions that no article's title matches (as ``hit_rank`` compares them):
    such a query can never be a hit, whatever the ranking."""
    titles = {norm(a.title).casefold() for a in articles}
    return sorted({q.expected for q in queries
                   if q.expected and norm(q.expected).casefold() not in titles})


def logged_clicks_from(path: str | Path, articles) -> list[tuple[str, object]]:
    """A query set read as a click log for ``adapt_encoder``: each on-topic query's last user
    turn with the article it expects (what ``logged_clicks`` gives from a real history)."""
    by_title = {norm(a.title).casefold(): a for a in articles}
    clicks = []
    for q in load_queries(path):
        said = [t.get("content", "") for t in q.conversation if t.get("role") == "user"]
        article = by_title.get(norm(q.expected).casefold()) if q.expected else None
        if said and article is not None:
            clicks.append((said[-1], article))
    return clicks


def load_queries(path: str | Path) -> list[Query]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                turns = data["conversation"]
                if not isinstance(turns, list) or not turns:
                    raise ValueError("conversation must be a non-empty list of turns")
                out.append(Query(turns, norm(data.get("expected") or "")))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
    return out


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def hit_rank(titles: Sequence[str], expected: str) -> int | None:
    """1-based rank of the first title equal to ``expected`` (whitespace and case folded: the
    KB repeats some questions with other capitalisation, and those are the same question)."""
    want = norm(expected).casefold()
    for rank, title in enumerate(titles, 1):
        if norm(title).casefold() == want:
            return rank
    return None


@dataclass
class Outcome:
    expected: str
    titles: list[str]  # surfaced suggestions, in order ([] when silent)
    surfaced: bool
    relevance: float = 0.0


def faq_metrics(outcomes: Iterable[Outcome], ks: Sequence[int] = KS,
                mrr_k: int = 10) -> dict[str, float]:
    """recall@k and MRR@k over on-topic queries; false-surface rate over off-topic ones."""
    on, off = [], []
    for o in outcomes:
        (on if o.expected else off).append(o)
    ranks = [hit_rank(o.titles if o.surfaced else [], o.expected) for o in on]
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall@{k}"] = (sum(r is not None and r <= k for r in ranks) / len(ranks)
                              if ranks else float("nan"))
    out[f"mrr@{mrr_k}"] = (sum(1.0 / r for r in ranks if r is not None and r <= mrr_k)
                           / len(ranks) if ranks else float("nan"))
    out["n_queries"] = len(on)
    out["surface_rate_on_topic"] = (sum(o.surfaced for o in on) / len(on)
                                    if on else float("nan"))
    out["n_off_topic"] = len(off)
    out["false_surface_rate"] = (sum(o.surfaced for o in off) / len(off)
                                 if off else float("nan"))
    return out


# ---------------------------------------------------------------------------------------------
# running the plugin
# ---------------------------------------------------------------------------------------------
def build_recommender(articles, variant: str, encoder, *, chroma: str | None = None,
                      title_weight: float = 0.5, settings=None):
    """A Recommender over ``articles`` represented as ``variant`` (see the module doc)."""
    from convrec.knowledge.index import MemoryIndex, persistent_index
    from convrec.recommender import Recommender
    from convrec.settings import Settings

    settings = settings or Settings()
    index = (persistent_index(Path(chroma) / variant, f"faq-{variant}") if chroma
             else MemoryIndex())
    rec = Recommender(settings, encoder=encoder, index=index)
    if variant == "default":
        rec.ingest(articles)
    elif variant == "title":
        rec.ingest([a.model_copy(update={"body": ""}) for a in articles])
    elif variant == "fused":
        titles = encoder.encode_queries([a.title for a in articles])
        bodies = encoder.encode_queries([a.body or a.title for a in articles])
        vectors = title_weight * titles + (1 - title_weight) * bodies
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        index.upsert(articles, vectors.astype(np.float32))
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return rec


def run_queries(rec, queries: Sequence[Query], *, k: int = 10) -> list[Outcome]:
    outcomes = []
    for q in queries:
        result = rec.suggest(q.conversation, k=k, log=False)
        outcomes.append(Outcome(q.expected, [s.title for s in result.suggestions],
                                result.surfaced, float(result.relevance)))
    return outcomes


def evaluate_variant(articles, queries, variant, encoder, *, chroma=None,
                     title_weight=0.5) -> dict:
    from convrec.pipeline.gate import auc
    from convrec.settings import Settings

    t0 = time.perf_counter()
    rec = build_recommender(articles, variant, encoder, chroma=chroma,
                            title_weight=title_weight)
    gate = rec.gate_in_force().model_dump(exclude={"path"})  # which curve the run read
    gated = run_queries(rec, queries)
    base = Settings()
    open_settings = base.model_copy(update={"suggest": base.suggest.model_copy(
        update={"threshold": 0.0, "min_item_relevance": 0.0})})
    rec.settings = open_settings
    ungated = run_queries(rec, queries)
    out = faq_metrics(gated)
    out["gate"] = gate
    out["ungated"] = faq_metrics(ungated)
    # the gate as a classifier of on-topic vs off-topic conversations
    out["gate_auc_on_vs_off_topic"] = auc([o.relevance for o in ungated],
                                          [bool(o.expected) for o in ungated])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    out["misses"] = [
        {"expected": o.expected, "got": o.titles[:1]}
        for o in gated if o.expected and hit_rank(o.titles[:1], o.expected) is None]
    out["false_surfaces"] = [
        {"top": o.titles[:1], "relevance": round(o.relevance, 3)}
        for o in gated if not o.expected and o.surfaced]
    return out


def run(kb: str, queries_path: str, out_path: str | None, *, variant: str = "all",
        chroma: str | None = None, title_weight: float = 0.5,
        encoder_model: str | None = None, adapt_epochs: int = 0,
        adapt_queries: str | None = None) -> dict:
    from convrec.knowledge.encoder import ContentEncoder

    t0 = time.perf_counter()
    articles = load_kb(kb)
    queries = load_queries(queries_path)
    missing = missing_from_kb(queries, articles)
    if missing:
        print(f"warning: {len(missing)} expected question(s) are not in the KB and count as "
              f"misses, e.g. {missing[0]!r}", file=sys.stderr)
    encoder = ContentEncoder(encoder_model)
    adapted = None
    variants = VARIANTS if variant == "all" else (variant,)
    with tempfile.TemporaryDirectory(prefix="faq-adapted-") as tmp:  # removed after the run
        if adapt_epochs:  # fine-tune on the KB's own articles first (no queries are used)
            from convrec.knowledge.adapt import AdaptConfig, adapt_encoder

            clicks = logged_clicks_from(adapt_queries, articles) if adapt_queries else []
            report = adapt_encoder(articles, Path(tmp) / "encoder", encoder=encoder,
                                   config=AdaptConfig(epochs=adapt_epochs), queries=clicks)
            adapted = {"from": encoder.name, "epochs": adapt_epochs,
                       "queries": adapt_queries, "n_query_pairs": report.n_query_pairs,
                       "seconds": report.seconds, "losses": report.losses}
            encoder = ContentEncoder(report.out_dir)
        results = {v: evaluate_variant(articles, queries, v, encoder, chroma=chroma,
                                       title_weight=title_weight) for v in variants}
    top = "fused" if "fused" in results else variants[0]
    out = {"benchmark": "faq", "kb": str(kb), "queries": str(queries_path),
           "encoder": encoder.name, "adapted": adapted,
           "n_articles": len(articles), "variant": top, "title_weight": title_weight,
           "expected_missing_from_kb": missing,
           **{k: v for k, v in results[top].items() if k not in ("misses", "false_surfaces")},
           "variants": results, "seconds_total": round(time.perf_counter() - t0, 1)}
    if out_path:
        Path(out_path).write_text(json.dumps(out, indent=2))
    print_table(out)
    return out


def print_table(out: dict) -> None:
    print(f"FAQ: {out['n_articles']} articles, {out['n_queries']} on-topic + "
          f"{out['n_off_topic']} off-topic conversations ({out['queries']})")
    print(f"{'variant':<9}{'R@1':>7}{'R@3':>7}{'MRR@10':>8}{'false':>7}{'shown':>7}"
          f"   | ungated{'R@1':>6}{'R@3':>7}{'MRR@10':>8}{'gateAUC':>9}")
    for name, r in out["variants"].items():
        u = r["ungated"]
        print(f"{name:<9}{r['recall@1']:>7.3f}{r['recall@3']:>7.3f}{r['mrr@10']:>8.3f}"
              f"{r['false_surface_rate']:>7.3f}{r['surface_rate_on_topic']:>7.3f}   |        "
              f"{u['recall@1']:>6.3f}{u['recall@3']:>7.3f}{u['mrr@10']:>8.3f}"
              f"{r['gate_auc_on_vs_off_topic']:>9.3f}")
    print("false = false-surface rate on off-topic conversations; shown = share of on-topic "
          "conversations where something surfaced")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kb", required=True, help="FAQ CSV (question, answer, link, lang)")
    p.add_argument("--queries", required=True, help="JSONL of conversations + expected")
    p.add_argument("--out")
    p.add_argument("--variant", choices=(*VARIANTS, "all"), default="all")
    p.add_argument("--title-weight", type=float, default=0.5)
    p.add_argument("--chroma", help="use a persistent Chroma index under this folder")
    p.add_argument("--encoder", help="sentence-transformers model name or local folder "
                   "(default: the plugin's all-MiniLM-L6-v2)")
    p.add_argument("--adapt-epochs", type=int, default=0,
                   help="first adapt the encoder to the KB's articles for this many epochs "
                   "(convrec.knowledge.adapt; 0 = off)")
    p.add_argument("--adapt-queries",
                   help="with --adapt-epochs: also adapt on this query set read as a click log "
                   "(each on-topic query's last user turn and its expected article); never the "
                   "set being measured")
    a = p.parse_args(argv)
    if a.adapt_queries and not a.adapt_epochs:
        p.error("--adapt-queries needs --adapt-epochs")
    if a.adapt_queries and Path(a.adapt_queries).resolve() == Path(a.queries).resolve():
        p.error("--adapt-queries must not be the query set being measured")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(a.kb, a.queries, a.out, variant=a.variant, chroma=a.chroma,
        title_weight=a.title_weight, encoder_model=a.encoder, adapt_epochs=a.adapt_epochs,
        adapt_queries=a.adapt_queries)
    return 0


if __name__ == "__main__":
    sys.exit(main())
