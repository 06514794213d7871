"""ReDial conversational recommendation benchmark (CRSLab-style protocol).

    python benchmarks/redial.py --split-dev /work/shared/data/redial/kgsf_valid_data.jsonl \
        --movies /work/shared/data/redial/movies_with_mentions.csv --out /tmp/redial.json
    python benchmarks/redial.py --train TRAIN.jsonl --test TEST.jsonl --movies MOVIES.csv \
        --out results.json [--movielens /work/shared/data/movielens-1m] [--sequence-model]

Protocol. Dialogues are read in the original ReDial JSON format; consecutive messages of one
speaker are merged into one turn (the seeker is the initiator, the recommender the
respondent). Every recommender turn that mentions at least one movie (``@<movieId>``) and has
a non-empty context is an example; the context is all earlier turns, each ``@id`` rendered as
the movie's title. All movies of the movie file are ranked, and every movie the turn mentions
is a target: recall@k is the share of targets ranked in the top k.

* ``standard``: every target counts and every movie is ranked (what CRSLab reports).
* ``dedup``: targets already mentioned in the context are dropped, and movies already
  mentioned in the context are removed from the ranking (what a recommender that never
  re-suggests what was just said would face; it is also what the plugin does, as it skips
  items the conversation already names).

Rankers, side by side:

* ``popularity``: mentions in the training dialogues.
* ``zero_shot``: the plugin's own path with no training: movies as products whose text is the
  title, the context turns (seeker = user, recommender = assistant) mixed by
  ``convrec.pipeline.conversation.build_query`` with the default ``SuggestSettings``, cosine.
* ``zero_shot_rich`` (with ``--movielens DIR``): the same with each movie's text enriched by
  MovieLens-1M genres and DBpedia abstract where the title and year match (27% of mentions).
* ``hybrid``: a conditional-logit (softmax over all movies) of a dozen features, its weights
  fitted by maximum likelihood on the training dialogues with 5-fold cross-fitting (every
  training example's features come from statistics of the other folds; one fit for
  ``standard``, one for ``dedup``): popularity (all mentions and recommender mentions), the
  zero-shot similarity, co-mentions learned from training dialogues (raw, cosine-normalised,
  from the seeker's movies), a nearest-neighbour vote of training contexts (dialogue-kNN), the
  mean context of the training turns that named each movie (profile), title similarity to the
  context's movies, recency of a mention in the context, and whether the seeker named it.
* ``sequence_model`` (with ``--sequence-model``): convrec's sequential model
  (``convrec.model``, default ``ModelConfig``) trained on the training dialogues, one
  sequence per dialogue (turn tokens + movie mentions as item events), early-stopped on 10%
  of them; ``hybrid+sequence_model`` adds its scores to the hybrid's logits with a weight
  chosen on those held-out training dialogues.

The gate: each recommender turn with a non-empty context is a decision; it is positive when
the turn mentions a movie. ``gate_auc`` is the AUC of the plugin's shipped gate score (the
best zero-shot cosine); precision/recall are for the default ``Gate`` settings, for a gate
fitted on the training dialogues with ``fit_gate``, and for the intent-aware gate that
``convrec calibrate`` fits (the curve plus weights over the seeker's last turn, fitted on the
training dialogues); ``gate_auc_calibrated`` is that gate's AUC.

The data's licence forbids redistribution: this script reads it from where it lies.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MENTION = re.compile(r"@(\d+)")
KS = (1, 10, 50)


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
@dataclass
class Turn:
    role: str  # "seeker" | "recommender"
    text: str  # raw text, movies as @id
    mentions: list[str] = field(default_factory=list)  # movie ids, in order, unique


@dataclass
class Dialogue:
    id: str
    turns: list[Turn]


@dataclass
class Example:
    """One recommender turn that mentions movies: predict them from the turns before it."""

    dialogue: int  # index into the dialogue list
    turn: int  # index of the recommender turn; the context is turns[:turn]
    targets: list[str]
    context_mentions: list[str]  # movies mentioned in the context, in order, unique
    context_by_seeker: list[str] = field(default_factory=list)  # those the seeker named


def _unique(seq):
    return list(dict.fromkeys(seq))


def parse_dialogue(record: dict) -> Dialogue:
    seeker = record.get("initiatorWorkerId")
    turns: list[Turn] = []
    last_sender = None
    for msg in record["messages"]:
        text = (msg.get("text") or "").strip()
        if not text:
            continue
        sender = msg.get("senderWorkerId")
        role = "seeker" if sender == seeker else "recommender"
        if turns and sender == last_sender:
            turns[-1].text += " " + text
        else:
            turns.append(Turn(role, text))
        last_sender = sender
    for turn in turns:
        turn.mentions = _unique(MENTION.findall(turn.text))
    return Dialogue(str(record.get("conversationId", "")), turns)


def load_dialogues(path: str | Path) -> list[Dialogue]:
    out = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                out.append(parse_dialogue(json.loads(line)))
            except (ValueError, KeyError) as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
    return out


def load_movies(path: str | Path) -> tuple[list[str], list[str]]:
    """movieId and cleaned movieName of every movie, in file order."""
    ids, titles = [], []
    with open(path, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            ids.append(str(row["movieId"]).strip())
            titles.append(re.sub(r"\s+", " ", row["movieName"]).strip())
    return ids, titles


def make_examples(dialogues: Sequence[Dialogue]) -> list[Example]:
    examples = []
    for d, dialogue in enumerate(dialogues):
        seen: list[str] = []
        by_seeker: list[str] = []
        for t, turn in enumerate(dialogue.turns):
            if turn.role == "recommender" and turn.mentions and t > 0:
                examples.append(Example(d, t, list(turn.mentions), list(seen), list(by_seeker)))
            seen = _unique(seen + turn.mentions)
            if turn.role == "seeker":
                by_seeker = _unique(by_seeker + turn.mentions)
    return examples


def render(text: str, titles: dict[str, str]) -> str:
    """Replace each @id by the movie's title (what a reader of the chat would see)."""
    return MENTION.sub(lambda m: titles.get(m.group(1), "a movie"), text)


def split_dialogues(dialogues: Sequence[Dialogue], test_fraction: float = 0.2,
                    seed: int = 0) -> tuple[list[Dialogue], list[Dialogue]]:
    """Split by conversation (never inside one), reproducibly."""
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    n_test = int(round(len(order) * test_fraction))
    test = set(order[:n_test])
    return ([d for i, d in enumerate(dialogues) if i not in test],
            [d for i, d in enumerate(dialogues) if i in test])


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def target_ranks(scores: np.ndarray, targets: Sequence[int], exclude: Sequence[int] = (),
                 tiebreak: np.ndarray | None = None) -> list[int]:
    """0-based rank of each target among all items, ``exclude`` removed from the ranking.

    Ties are broken by ``tiebreak`` (lower first; default: item order), so a constant scorer
    cannot look good by luck.
    """
    s = np.asarray(scores, dtype=np.float64).copy()
    if len(exclude):
        s[np.asarray(list(exclude), dtype=np.int64)] = -np.inf
    tb = np.arange(len(s)) if tiebreak is None else np.asarray(tiebreak)
    ranks = []
    for t in targets:
        st = s[t]
        ranks.append(int(np.sum(s > st) + np.sum((s == st) & (tb < tb[t]))))
    return ranks


def recall_from_ranks(ranks: Sequence[int], ks: Sequence[int] = KS) -> dict[str, float]:
    r = np.asarray(ranks)
    out: dict[str, float] = {f"recall@{k}": float(np.mean(r < k)) if len(r) else float("nan")
                             for k in ks}
    out["n_targets"] = len(r)
    return out


def evaluate(scores: np.ndarray, examples: Sequence[Example], col: dict[str, int],
             ks: Sequence[int] = KS, tiebreak: np.ndarray | None = None) -> dict[str, dict]:
    """``scores[i]`` ranks every item for ``examples[i]``: standard and dedup recall@k."""
    std: list[int] = []
    ded: list[int] = []
    for i, ex in enumerate(examples):
        targets = [col[m] for m in ex.targets if m in col]
        context = [col[m] for m in ex.context_mentions if m in col]
        std += target_ranks(scores[i], targets, (), tiebreak)
        in_context = set(context)
        fresh = [t for t in targets if t not in in_context]
        ded += target_ranks(scores[i], fresh, context, tiebreak)
    return {"standard": recall_from_ranks(std, ks), "dedup": recall_from_ranks(ded, ks)}


# ---------------------------------------------------------------------------------------------
# encoding (cached on disk: the turns of 901 dialogues take minutes on a CPU)
# ---------------------------------------------------------------------------------------------
class TextVectors:
    """Encode texts with the plugin's encoder, caching vectors in an EmbeddingCache."""

    def __init__(self, encoder, cache_path: str | None):
        from convrec.knowledge.cache import EmbeddingCache

        self.encoder = encoder
        self.cache = EmbeddingCache(cache_path) if cache_path else EmbeddingCache()

    def queries(self, texts: Sequence[str]) -> np.ndarray:
        from convrec.knowledge.cache import content_key

        keys = [content_key(self.encoder.name, "query", t) for t in texts]
        found = self.cache.get_many(keys)
        missing = _unique([t for t, k in zip(texts, keys, strict=True) if k not in found])
        if missing:
            vecs = self.encoder.encode_queries(missing)
            fresh = {content_key(self.encoder.name, "query", t): v
                     for t, v in zip(missing, vecs, strict=True)}
            self.cache.put_many(fresh)
            found.update(fresh)
        return np.stack([found[k] for k in keys]).astype(np.float32)

    def items(self, items) -> np.ndarray:
        from convrec.knowledge.cache import content_key

        keys = [content_key(self.encoder.name, "item", i.encoding_text()) for i in items]
        found = self.cache.get_many(keys)
        miss = [i for i, k in enumerate(keys) if k not in found]
        if miss:
            vecs = self.encoder.encode_items([items[i] for i in miss])
            fresh = {keys[i]: v for i, v in zip(miss, vecs, strict=True)}
            self.cache.put_many(fresh)
            found.update(fresh)
        return np.stack([found[k] for k in keys]).astype(np.float32)


@dataclass
class Encoded:
    """Per-dialogue turn vectors and the movie (item) vectors."""

    turn_vectors: list[np.ndarray]  # one [T, dim] per dialogue
    item_vectors: np.ndarray  # [M, dim]
    rich_vectors: np.ndarray | None = None  # [M, dim] title + genres + abstract, if known
    has_metadata: np.ndarray | None = None  # [M] 1.0 where metadata was found
    ml_pop: np.ndarray | None = None  # [M] log(1 + MovieLens-1M ratings), 0 when unmatched
    ml_sim: Any = None  # [M, M] sparse MovieLens-1M item-item cosine of rater sets


def encode_all(dialogues: Sequence[Dialogue], movie_ids: list[str], titles: list[str],
               vectors: TextVectors) -> Encoded:
    from convrec.knowledge.items import Product

    by_id = dict(zip(movie_ids, titles, strict=True))
    texts = [render(t.text, by_id) for d in dialogues for t in d.turns]
    flat = vectors.queries(texts) if texts else np.zeros((0, 384), np.float32)
    out, pos = [], 0
    for d in dialogues:
        out.append(flat[pos:pos + len(d.turns)])
        pos += len(d.turns)
    items = [Product(id=f"m{m}", title=t) for m, t in zip(movie_ids, titles, strict=True)]
    return Encoded(out, vectors.items(items))


def _title_key(title: str) -> tuple[str, str] | None:
    """(normalised name, year) of 'Name (1999)' or MovieLens' 'Name, The (1999)'."""
    m = re.match(r"(.*)\((\d{4})\)\s*$", title.lower().strip())
    if not m:
        return None
    name = re.sub(r"\s*\(.*?\)\s*$", "", m.group(1).strip())  # MovieLens a.k.a. titles
    article = re.match(r"(.*), (the|a|an)$", name)
    if article:
        name = f"{article.group(2)} {article.group(1)}"
    name = re.sub(r"\s+", " ", re.sub(r"[^a-z0-9 ]", "", name)).strip()
    return name, m.group(2)


def _movielens_by_key(root: Path) -> dict:
    """(normalised name, year) -> (MovieLens MovieID, genres)."""
    by_key: dict = {}
    with open(root / "movies.dat", encoding="latin-1") as fh:
        for line in fh:
            parts = line.rstrip("\n").split("::")
            if len(parts) == 3:
                by_key[_title_key(parts[1])] = (parts[0], parts[2].replace("|", ", "))
    return by_key


def movielens_behaviour(movie_ids, titles, movielens_dir) -> tuple[np.ndarray, Any]:
    """What MovieLens-1M's 1M ratings say about the ReDial movies matched by title + year.

    Answers ``log(1 + number of ratings)`` per movie [M] (0 when unmatched) and the item-item
    cosine of the matched movies' rater sets as a sparse [M, M] matrix: behaviour from other
    people, the "pretraining on behaviour data" the plugin is for.
    """
    import gzip

    from scipy.sparse import coo_matrix, csr_matrix

    root = Path(movielens_dir)
    by_key = _movielens_by_key(root)
    ml_to_col = {}
    for i, title in enumerate(titles):
        hit = by_key.get(_title_key(title))
        if hit:
            ml_to_col.setdefault(hit[0], []).append(i)
    users, items = [], []
    with gzip.open(root / "ratings_no_timestamp.dat.gz", "rt") as fh:
        for line in fh:
            user, movie, _rating = line.split("::")
            users.append(int(user))
            items.append(int(movie))
    n_movies = max(items) + 1
    x = csr_matrix(coo_matrix((np.ones(len(items), np.float32), (users, items)),
                              shape=(max(users) + 1, n_movies)))
    counts = np.asarray(x.sum(axis=0)).ravel()
    m = len(movie_ids)
    pop = np.zeros(m, np.float32)
    matched = sorted(int(k) for k in ml_to_col)
    for k in matched:
        for c in ml_to_col[str(k)]:
            pop[c] = np.log1p(counts[k])
    sub = x[:, matched]
    co = (sub.T @ sub).toarray()
    norm = np.sqrt(np.maximum(np.diag(co), 1.0))
    cos = co / norm[:, None] / norm[None, :]
    np.fill_diagonal(cos, 0.0)
    rows, cols, vals = [], [], []
    for a, ka in enumerate(matched):
        for b in np.flatnonzero(cos[a] > 0.05):
            for ca in ml_to_col[str(ka)]:
                for cb in ml_to_col[str(matched[b])]:
                    rows.append(ca)
                    cols.append(cb)
                    vals.append(cos[a, b])
    sim = coo_matrix((np.array(vals, np.float32), (rows, cols)), shape=(m, m)).tocsr()
    return pop, sim


def movie_metadata(movie_ids, titles, movielens_dir) -> dict[str, tuple[str, str]]:
    """movieId -> (genres, abstract) for the movies matched in MovieLens-1M by title + year."""
    root = Path(movielens_dir)
    by_key = _movielens_by_key(root)
    abstracts = {}
    if (root / "dbpedia_abstracts.json").exists():
        abstracts = json.loads((root / "dbpedia_abstracts.json").read_text(encoding="utf-8"))
    out = {}
    for mid, title in zip(movie_ids, titles, strict=True):
        hit = by_key.get(_title_key(title))
        if hit:
            out[mid] = (hit[1], abstracts.get(hit[0], ""))
    return out


def rich_movie_vectors(movie_ids, titles, movielens_dir, vectors: TextVectors):
    """Movie vectors from title + genres (category) + abstract (description), as products."""
    from convrec.knowledge.items import Product

    meta = movie_metadata(movie_ids, titles, movielens_dir)
    items = [Product(id=f"m{m}", title=t, category=meta[m][0] if m in meta else None,
                     description=meta[m][1] if m in meta else "")
             for m, t in zip(movie_ids, titles, strict=True)]
    has = np.array([1.0 if m in meta else 0.0 for m in movie_ids], np.float32)
    return vectors.items(items), has


def context_query(dialogue: Dialogue, turn_vectors: np.ndarray, upto: int, settings,
                  titles: dict[str, str] | None = None) -> np.ndarray:
    """The plugin's query vector for the context ``turns[:upto]`` (build_query, same rules)."""
    from convrec.pipeline.conversation import build_query
    from convrec.types import Message

    lo = max(0, upto - settings.max_turns)
    turns = [Message(role="user" if t.role == "seeker" else "assistant",
                     content=t.text) for t in dialogue.turns[lo:upto]]
    return build_query(turns, turn_vectors[lo:upto], settings).vector


def query_matrix(dialogues, enc: Encoded, examples, settings) -> np.ndarray:
    return np.stack([context_query(dialogues[e.dialogue], enc.turn_vectors[e.dialogue], e.turn,
                                   settings) for e in examples]).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# statistics learned from training dialogues, and the hybrid's features
# ---------------------------------------------------------------------------------------------
@dataclass
class Stats:
    pop: np.ndarray  # [M] dialogues mentioning each movie
    pop_rec: np.ndarray  # [M] recommender turns mentioning each movie
    co: Any  # [M, M] scipy CSR: dialogues in which both movies are mentioned
    knn_queries: np.ndarray  # [N, dim] context vectors of training examples
    knn_targets: list[list[int]]
    profiles: np.ndarray  # [M, dim] mean context vector of the examples naming each movie


def learn_stats(dialogues, enc: Encoded, examples, col, settings) -> Stats:
    """What the training dialogues teach: popularity, co-mentions, contexts per movie."""
    from scipy.sparse import coo_matrix

    m = len(col)
    pop = np.zeros(m, np.float32)
    pop_rec = np.zeros(m, np.float32)
    rows, cols = [], []
    for d in dialogues:
        movies = sorted({col[x] for t in d.turns for x in t.mentions if x in col})
        for t in d.turns:
            if t.role == "recommender":
                for x in t.mentions:
                    if x in col:
                        pop_rec[col[x]] += 1
        for a in movies:
            pop[a] += 1
            for b in movies:
                if a != b:
                    rows.append(a)
                    cols.append(b)
    co = coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(m, m)).tocsr()
    dim = enc.item_vectors.shape[1]
    q = (query_matrix(dialogues, enc, examples, settings) if examples
         else np.zeros((0, dim), np.float32))
    targets = [[col[x] for x in e.targets if x in col] for e in examples]
    profiles = np.zeros((m, dim), np.float32)
    for qi, ts in zip(q, targets, strict=True):
        for t in ts:
            profiles[t] += qi
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    profiles = np.where(norms > 0, profiles / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    return Stats(pop, pop_rec, co, q, targets, profiles)


FEATURES = ("log_pop", "log_pop_recommender", "zero_shot_cos", "co_mention", "co_cosine",
            "co_from_seeker", "knn_vote", "profile_cos", "title_sim_context",
            "context_recency", "named_by_seeker")
#: Extra features when movie metadata (MovieLens genres + DBpedia abstract) is given.
RICH_FEATURES = ("rich_cos", "has_metadata", "ml_log_pop", "ml_co")


def features(dialogues, enc: Encoded, examples: Sequence[Example], col, stats: Stats,
             settings, knn_k: int = 40) -> np.ndarray:
    """[N, M, F] float32 features (FEATURES, then RICH_FEATURES if any) for every example."""
    n, m = len(examples), len(col)
    rich = enc.rich_vectors is not None
    names = FEATURES + (RICH_FEATURES if rich else ())
    f = {name: i for i, name in enumerate(names)}
    x = np.zeros((n, m, len(names)), np.float32)
    q = query_matrix(dialogues, enc, examples, settings)
    x[:, :, f["log_pop"]] = np.log1p(stats.pop)[None, :]
    x[:, :, f["log_pop_recommender"]] = np.log1p(stats.pop_rec)[None, :]
    x[:, :, f["zero_shot_cos"]] = q @ enc.item_vectors.T
    x[:, :, f["profile_cos"]] = q @ stats.profiles.T
    if rich:
        x[:, :, f["rich_cos"]] = q @ enc.rich_vectors.T
        x[:, :, f["has_metadata"]] = enc.has_metadata[None, :]
        x[:, :, f["ml_log_pop"]] = enc.ml_pop[None, :]
    sims = q @ stats.knn_queries.T if len(stats.knn_queries) else np.zeros((n, 0))
    norm = 1.0 / np.sqrt(np.maximum(stats.pop, 1.0))
    for i, ex in enumerate(examples):
        ctx = [col[c] for c in ex.context_mentions if c in col]
        if ctx:
            # recency: the last mentioned counts most
            w = 0.5 ** np.arange(len(ctx))[::-1]
            rows = stats.co[ctx]
            co = np.asarray(rows.T @ w).ravel()
            x[i, :, f["co_mention"]] = np.log1p(co)
            x[i, :, f["co_cosine"]] = np.asarray(rows.T @ (w * norm[ctx])).ravel() * norm
            seeker = {col[c] for c in ex.context_by_seeker if c in col}
            ws = np.array([wc if c in seeker else 0.0 for c, wc in zip(ctx, w, strict=True)])
            if ws.any():
                x[i, :, f["co_from_seeker"]] = np.log1p(np.asarray(rows.T @ ws).ravel())
            x[i, :, f["title_sim_context"]] = (enc.item_vectors @ enc.item_vectors[ctx].T @ w
                                               ) / w.sum()
            if rich:
                x[i, :, f["ml_co"]] = np.asarray(enc.ml_sim[ctx].T @ w).ravel() / w.sum()
            for c, wc in zip(ctx, w, strict=True):
                x[i, c, f["context_recency"]] = max(x[i, c, f["context_recency"]], wc)
                if c in seeker:
                    x[i, c, f["named_by_seeker"]] = 1.0
        if sims.shape[1]:
            top = np.argpartition(-sims[i], min(knn_k, sims.shape[1] - 1))[:knn_k]
            vote = np.zeros(m, np.float32)
            for j in top:
                s_ = max(float(sims[i, j]), 0.0) ** 3
                for t in stats.knn_targets[j]:
                    vote[t] += s_
            x[i, :, f["knn_vote"]] = np.log1p(10 * vote)
    return x


def fit_conditional_logit(x: np.ndarray, examples, col, dedup: bool,
                          l2: float = 1e-2) -> np.ndarray:
    """Weights maximising sum over targets of log softmax(x @ w) over all (allowed) movies."""
    from scipy.optimize import minimize

    n, m, f = x.shape
    target_rows, target_cols = [], []
    mask = np.zeros((n, m), bool)
    for i, ex in enumerate(examples):
        ctx = {col[c] for c in ex.context_mentions if c in col}
        for t in ex.targets:
            if t in col and not (dedup and col[t] in ctx):
                target_rows.append(i)
                target_cols.append(col[t])
        if dedup and ctx:
            mask[i, list(ctx)] = True
    tr, tc = np.array(target_rows), np.array(target_cols)
    xf = x.reshape(n * m, f)

    def loss(w):
        z = (xf @ w.astype(np.float32)).reshape(n, m).astype(np.float64)
        z[mask] = -np.inf
        zmax = z.max(axis=1, keepdims=True)
        e = np.exp(z - zmax)
        e[mask] = 0.0
        denom = e.sum(axis=1, keepdims=True)
        lse = (np.log(denom) + zmax).ravel()
        p = (e / denom).astype(np.float32)
        val = -(z[tr, tc] - lse[tr]).sum()
        counts = np.bincount(tr, minlength=n).astype(np.float32)
        expected = (p * counts[:, None]).reshape(n * m) @ xf  # [F]
        grad = -(x[tr, tc].sum(axis=0) - expected)
        k = len(tr)
        return val / k + l2 * float(w @ w), grad / k + 2 * l2 * w

    res = minimize(loss, np.zeros(f), jac=True, method="L-BFGS-B",
                   options={"maxiter": 200})
    return res.x.astype(np.float32)


def choose_blend(base: np.ndarray, extra: np.ndarray, examples, col, dedup: bool,
                 betas=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0)) -> float:
    """The weight of ``extra`` added to ``base`` logits that maximises the log-likelihood of
    the examples' targets (full softmax over the allowed movies)."""
    best, best_ll = 0.0, -np.inf
    for beta in betas:
        z = (base + beta * extra).astype(np.float64)
        ll = 0.0
        for i, ex in enumerate(examples):
            ctx = {col[c] for c in ex.context_mentions if c in col}
            zi = z[i].copy()
            if dedup and ctx:
                zi[list(ctx)] = -np.inf
            lse = np.log(np.exp(zi - zi.max()).sum()) + zi.max()
            for t in ex.targets:
                if t in col and not (dedup and col[t] in ctx):
                    ll += zi[col[t]] - lse
        if ll > best_ll:
            best, best_ll = float(beta), ll
    return best


def cross_fitted_features(dialogues, enc, col, settings, folds: int = 5, seed: int = 0):
    """Features of every training example, its statistics learned without its own fold."""
    order = list(range(len(dialogues)))
    random.Random(seed).shuffle(order)
    fold_of = {d: i % folds for i, d in enumerate(order)}
    all_examples = make_examples(dialogues)
    xs, exs = [], []
    for f in range(folds):
        inside = [d for d in range(len(dialogues)) if fold_of[d] != f]
        sub_d = [dialogues[d] for d in inside]
        sub_enc = Encoded([enc.turn_vectors[d] for d in inside], enc.item_vectors,
                          enc.rich_vectors, enc.has_metadata, enc.ml_pop, enc.ml_sim)
        stats = learn_stats(sub_d, sub_enc, make_examples(sub_d), col, settings)
        held_ex = [e for e in all_examples if fold_of[e.dialogue] == f]
        xs.append(features(dialogues, enc, held_ex, col, stats, settings))
        exs += held_ex
    return np.concatenate(xs), exs


# ---------------------------------------------------------------------------------------------
# the gate
# ---------------------------------------------------------------------------------------------
def gate_decisions(dialogues, enc: Encoded, settings
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best zero-shot cosine, mentions-a-movie, last seeker turn's vector) for every
    recommender turn with context; the vector is zero when the seeker has not spoken yet."""
    scores, labels, said = [], [], []
    for d, dialogue in enumerate(dialogues):
        for t, turn in enumerate(dialogue.turns):
            if turn.role != "recommender" or t == 0:
                continue
            q = context_query(dialogue, enc.turn_vectors[d], t, settings)
            scores.append(float((enc.item_vectors @ q).max()))
            labels.append(bool(turn.mentions))
            seeker = [j for j in range(t) if dialogue.turns[j].role == "seeker"]
            said.append(enc.turn_vectors[d][seeker[-1]] if seeker
                        else np.zeros(enc.item_vectors.shape[1], np.float32))
    return np.asarray(scores), np.asarray(labels), np.asarray(said, dtype=np.float32)


def gate_report(scores, labels, gate, said=None) -> dict[str, float]:
    """Precision, recall and surface rate of ``gate`` (with the seeker's last turn, if given),
    and the AUC of the relevance it answers."""
    from convrec.pipeline.gate import auc, relevances

    rel = relevances(gate, scores, said if gate.intent else None)
    opened = rel >= gate.threshold
    tp = int((opened & labels).sum())
    return {
        "threshold": gate.threshold, "center": round(gate.center, 4),
        "scale": round(gate.scale, 3), "intent": bool(gate.intent),
        "auc": auc(rel, labels),
        "precision": tp / max(int(opened.sum()), 1),
        "recall": tp / max(int(labels.sum()), 1),
        "surface_rate": float(opened.mean()) if len(opened) else float("nan"),
    }


# ---------------------------------------------------------------------------------------------
# the trained sequence model (convrec.model)
# ---------------------------------------------------------------------------------------------
def _dialogue_sequence(dialogue: Dialogue, col, turn_row0: int):
    """Tokens of one dialogue for convrec.model, and where each turn's tokens start.

    A movie mentioned in a turn is an item event placed *before* that turn's text token
    (recommender mention = ``view``, seeker mention = ``rate``), so the text that names a
    movie never precedes the prediction of that movie.
    """
    from convrec.model.config import EVENT_TYPE_INDEX

    rows, items, types, starts = [], [], [], []
    for t, turn in enumerate(dialogue.turns):
        starts.append(len(rows))
        for m in turn.mentions:
            if m in col:
                rows.append(col[m] + 1)
                items.append(col[m] + 1)
                types.append(EVENT_TYPE_INDEX["view" if turn.role == "recommender" else "rate"])
        rows.append(turn_row0 + t)
        items.append(0)
        types.append(EVENT_TYPE_INDEX["user_turn" if turn.role == "seeker" else "assistant_turn"])
    return rows, items, types, starts


def sequence_model_scores(train, test, enc_train: Encoded, enc_test: Encoded, col,
                          test_examples, *, seed: int = 0, max_seconds: float = 900.0,
                          train_examples=None):
    """Train convrec's sequential model on ``train`` dialogues; score every movie per example.

    Each dialogue is one user's sequence (turn tokens with their MiniLM vectors, movie mentions
    as item events). 10% of the training dialogues are held out for early stopping (NDCG@10
    of their recommender mentions). Returns (scores [N, M], training summary).
    """
    import torch

    from convrec.model.config import ModelConfig, TrainConfig
    from convrec.model.data import Example as SeqExample
    from convrec.model.data import FeatureTables, UserSequence, example_batches
    from convrec.model.network import time_gap_buckets
    from convrec.model.train import train as train_model

    m = len(col)
    turn_vecs = [*enc_train.turn_vectors, *enc_test.turn_vectors]
    content = np.vstack([np.zeros((1, enc_train.item_vectors.shape[1]), np.float32),
                         enc_train.item_vectors, *turn_vecs]).astype(np.float32)
    dialogues = [*train, *test]
    seqs, starts, row0 = [], [], 1 + m
    for i, d in enumerate(dialogues):
        rows, items, types, st = _dialogue_sequence(d, col, row0)
        row0 += len(turn_vecs[i])
        seqs.append(UserSequence(d.id or str(i), np.array(rows, np.int64),
                                 np.array(items, np.int64), np.array(types, np.int64),
                                 time_gap_buckets([10.0 * j for j in range(len(rows))])))
        starts.append(st)
    n_train = len(train)
    order = list(range(n_train))
    random.Random(seed).shuffle(order)
    held = set(order[: max(1, n_train // 10)])
    fit_seqs = [seqs[i] for i in range(n_train) if i not in held]
    valid = []
    for e in make_examples([train[i] for i in sorted(held)]):
        i = sorted(held)[e.dialogue]
        for t in e.targets:
            if t in col and starts[i][e.turn] > 0:
                valid.append(SeqExample(seqs[i].prefix(starts[i][e.turn]), col[t] + 1))

    seen = np.unique(np.concatenate([s.item for s in fit_seqs]))
    seen = seen[seen > 0]
    id_index = np.zeros(m + 1, np.int64)
    id_index[seen] = np.arange(1, len(seen) + 1)
    tables = FeatureTables(torch.from_numpy(content), torch.from_numpy(id_index))
    mc = ModelConfig(n_items=len(seen) + 1, content_dim=content.shape[1])
    # The recipe its README row was measured with (TrainConfig's defaults before they became
    # the MovieLens recipe); a few hundred short dialogues want small, steady steps.
    tc = TrainConfig(epochs=200, batch_size=128, lr=1e-3, lr_schedule="constant", eval_every=1,
                     progress=False, max_seconds=max_seconds, seed=seed, patience=5)
    result = train_model(mc, tc, tables, fit_seqs, valid)
    model = result.model.eval()

    def score(examples):
        out = np.zeros((len(examples), m), np.float32)
        with torch.no_grad():
            reps = model.item_representations(tables.item_content(mc.use_content),
                                              tables.id_index)
            pos = 0
            for batch in example_batches(examples, 256, mc.max_len):
                state = model.user_state(*tables.inputs(batch, mc.use_content))
                out[pos:pos + len(state)] = (state @ reps[1:].T).numpy()
                pos += len(state)
        return out

    out = score([SeqExample(seqs[n_train + e.dialogue].prefix(
        starts[n_train + e.dialogue][e.turn]), 1) for e in test_examples])
    # the held-out training dialogues (never trained on): for blending weights
    held_idx = [j for j, e in enumerate(train_examples or []) if e.dialogue in held]
    held_scores = score([SeqExample(seqs[train_examples[j].dialogue].prefix(
        starts[train_examples[j].dialogue][train_examples[j].turn]), 1) for j in held_idx])
    summary = {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
               "seconds": round(result.seconds, 1), "valid": result.best_valid,
               "n_train_sequences": len(fit_seqs), "n_valid_examples": len(valid),
               "n_id_items": int(len(seen)), "model_config": mc.to_dict()}
    return out, summary, held_idx, held_scores


# ---------------------------------------------------------------------------------------------
def run(train_path, test_path, movies_path, out_path, *, split_dev: str | None = None,
        seed: int = 0, cache: str | None = None, test_fraction: float = 0.2,
        sequence_model: bool = False, movielens: str | None = None,
        encoder: str | None = None) -> dict:
    from convrec.knowledge.encoder import ContentEncoder
    from convrec.pipeline.gate import Gate, auc, fit_gate
    from convrec.settings import SuggestSettings

    t0 = time.perf_counter()
    if split_dev:
        train, test = split_dialogues(load_dialogues(split_dev), test_fraction, seed)
        source = {"split_dev": str(split_dev), "seed": seed, "test_fraction": test_fraction}
    else:
        train, test = load_dialogues(train_path), load_dialogues(test_path)
        source = {"train": str(train_path), "test": str(test_path)}
    movie_ids, titles = load_movies(movies_path)
    col = {m: i for i, m in enumerate(movie_ids)}
    tiebreak = np.random.default_rng(12345).permutation(len(movie_ids))
    settings = SuggestSettings()

    vectors = TextVectors(ContentEncoder(encoder), cache)
    both = train + test
    enc_all = encode_all(both, movie_ids, titles, vectors)
    if movielens:
        enc_all.rich_vectors, enc_all.has_metadata = rich_movie_vectors(
            movie_ids, titles, movielens, vectors)
        enc_all.ml_pop, enc_all.ml_sim = movielens_behaviour(movie_ids, titles, movielens)
    shared = (enc_all.item_vectors, enc_all.rich_vectors, enc_all.has_metadata,
              enc_all.ml_pop, enc_all.ml_sim)
    enc_train = Encoded(enc_all.turn_vectors[:len(train)], *shared)
    enc_test = Encoded(enc_all.turn_vectors[len(train):], *shared)
    t_enc = time.perf_counter() - t0

    train_ex, test_ex = make_examples(train), make_examples(test)
    stats = learn_stats(train, enc_train, train_ex, col, settings)
    x_test = features(test, enc_test, test_ex, col, stats, settings)
    results: dict[str, dict] = {}
    names = FEATURES + (RICH_FEATURES if movielens else ())
    fi = {name: i for i, name in enumerate(names)}
    results["popularity"] = evaluate(x_test[:, :, fi["log_pop"]], test_ex, col,
                                     tiebreak=tiebreak)
    results["zero_shot"] = evaluate(x_test[:, :, fi["zero_shot_cos"]], test_ex, col,
                                    tiebreak=tiebreak)
    if movielens:
        results["zero_shot_rich"] = evaluate(x_test[:, :, fi["rich_cos"]], test_ex, col,
                                             tiebreak=tiebreak)

    x_cv, ex_cv = cross_fitted_features(train, enc_train, col, settings, seed=seed)
    weights, logits = {}, {}
    hybrid: dict[str, dict] = {}
    for mode in ("standard", "dedup"):
        w = fit_conditional_logit(x_cv, ex_cv, col, dedup=(mode == "dedup"))
        weights[mode] = dict(zip(names, (round(float(v), 4) for v in w), strict=True))
        logits[mode] = w
        hybrid[mode] = evaluate(x_test @ w, test_ex, col, tiebreak=tiebreak)[mode]
    results["hybrid"] = hybrid

    model_summary = None
    if sequence_model:
        try:
            # ex_cv is in fold order; the model needs examples indexed by training dialogue
            scores, model_summary, held_idx, held_scores = sequence_model_scores(
                train, test, enc_train, enc_test, col, test_ex, seed=seed,
                train_examples=ex_cv)
            results["sequence_model"] = evaluate(scores, test_ex, col, tiebreak=tiebreak)
            blend: dict[str, dict] = {}
            betas = {}
            for mode in ("standard", "dedup"):
                held_x = x_cv[held_idx] @ logits[mode]
                held_ex = [ex_cv[j] for j in held_idx]
                beta = choose_blend(held_x, held_scores, held_ex, col, mode == "dedup")
                betas[mode] = beta
                blend[mode] = evaluate(x_test @ logits[mode] + beta * scores, test_ex, col,
                                       tiebreak=tiebreak)[mode]
            results["hybrid+sequence_model"] = blend
            model_summary["blend_beta"] = betas
        except ImportError as exc:  # convrec.model not installed
            results["sequence_model"] = {"error": str(exc)}
    del x_cv

    g_train = gate_decisions(train, enc_train, settings)
    g_test = gate_decisions(test, enc_test, settings)
    default_gate = Gate(settings.gate_center, settings.gate_scale, settings.threshold)
    gate = {"auc": auc(g_test[0], g_test[1]), "n_decisions": int(len(g_test[1])),
            "positive_rate": float(np.mean(g_test[1])),
            "default": gate_report(g_test[0], g_test[1], default_gate)}
    try:
        fitted = fit_gate(g_train[0], g_train[1], threshold=settings.threshold)
        gate["fitted_on_train"] = gate_report(g_test[0], g_test[1], fitted)
    except ValueError as exc:  # similarity alone does not rank the training decisions
        gate["fitted_on_train"] = {"error": str(exc)}
    # What `convrec calibrate` fits: the curve plus weights over the seeker's last turn.
    aware = fit_gate(g_train[0], g_train[1], threshold=settings.threshold,
                     turn_vectors=g_train[2], encoder=vectors.encoder.name)
    gate["intent_fitted_on_train"] = gate_report(g_test[0], g_test[1], aware, g_test[2])
    gate["intent_auc"] = gate["intent_fitted_on_train"]["auc"]

    best = "hybrid"
    out = {
        "benchmark": "redial", "source": source, "movies": str(movies_path),
        "encoder": vectors.encoder.name,
        "n_train_dialogues": len(train), "n_test_dialogues": len(test),
        "n_test_examples": len(test_ex), "n_movies": len(movie_ids),
        "standard": results[best]["standard"], "dedup": results[best]["dedup"],
        "ranker": best, "rankers": results, "hybrid_weights": weights,
        "movie_metadata": str(movielens) if movielens else None,
        "sequence_model": model_summary,
        "gate_auc": gate["auc"], "gate_auc_calibrated": gate.get("intent_auc"), "gate": gate,
        "seconds": {"encode": round(t_enc, 1), "total": round(time.perf_counter() - t0, 1)},
    }
    if out_path:
        Path(out_path).write_text(json.dumps(out, indent=2))
    print_table(out)
    return out


def print_table(out: dict) -> None:
    print(f"ReDial: {out['n_train_dialogues']} train / {out['n_test_dialogues']} test dialogues, "
          f"{out['n_test_examples']} test turns, {out['n_movies']} movies ranked")
    head = f"{'ranker':<12}" + "".join(f"{m + ' ' + k:>16}" for m in ("std", "dedup")
                                       for k in ("R@1", "R@10", "R@50"))
    print(head)
    for name, res in out["rankers"].items():
        if "error" in res:
            print(f"{name:<12}  {res['error']}")
            continue
        row = f"{name:<12}"
        for mode in ("standard", "dedup"):
            for k in KS:
                row += f"{res[mode][f'recall@{k}']:>16.3f}"
        print(row)
    print(f"targets: standard {out['standard']['n_targets']}, dedup {out['dedup']['n_targets']}")
    g = out["gate"]
    print(f"gate: AUC {g['auc']:.3f} on {g['n_decisions']} recommender turns "
          f"({g['positive_rate']:.0%} mention a movie)")
    for name in ("default", "fitted_on_train", "intent_fitted_on_train"):
        r = g.get(name, {})
        if "precision" in r:
            print(f"  {name:<22} AUC {r['auc']:.3f}, threshold {r['threshold']:.2f} (center "
                  f"{r['center']}, scale {r['scale']}): precision {r['precision']:.3f} recall "
                  f"{r['recall']:.3f} surfaces {r['surface_rate']:.0%}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train")
    p.add_argument("--test")
    p.add_argument("--split-dev", help="one dialogue file, split by conversation into train/test")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--movies", required=True)
    p.add_argument("--out")
    p.add_argument("--cache", default=os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "convrec-bench-vectors.sqlite"),
        help="SQLite cache of text vectors ('' for none)")
    p.add_argument("--sequence-model", action="store_true",
                   help="also train convrec's sequential model on the training dialogues")
    p.add_argument("--movielens", help="MovieLens-1M folder (movies.dat, dbpedia_abstracts.json)"
                   ": adds genres and abstracts to the movies it matches by title and year")
    p.add_argument("--encoder", help="sentence-transformers model name or local folder "
                   "(default: the plugin's all-MiniLM-L6-v2)")
    a = p.parse_args(argv)
    if not a.split_dev and not (a.train and a.test):
        p.error("give --train and --test, or --split-dev FILE")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    run(a.train, a.test, a.movies, a.out, split_dev=a.split_dev, seed=a.seed,
        cache=a.cache or None, test_fraction=a.test_fraction, sequence_model=a.sequence_model,
        movielens=a.movielens, encoder=a.encoder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
