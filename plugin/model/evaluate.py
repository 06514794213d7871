"""Leave-one-out evaluation: rank every catalogue item, filter the history, HR/NDCG/MRR@K."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from convrec.model.data import Example, FeatureTables, example_batches
from convrec.model.network import SequentialRecommender


def ranks_from_scores(scores: Tensor, target: Tensor, seen: Tensor | None = None) -> Tensor:
    """0-based rank of each target among all items (scores [B, N + 1], column 0 is no item).

    Items in ``seen`` ((row, item) pairs) are filtered out, except the target itself; ties
    count in the target's favour.
    """
    scores = scores.clone()
    scores[:, 0] = float("-inf")
    target_score = scores.gather(1, target[:, None])
    if seen is not None and len(seen):
        scores[seen[:, 0], seen[:, 1]] = float("-inf")
    return (scores > target_score).sum(dim=1)


def metrics_from_ranks(ranks: Tensor, ks: Sequence[int] = (10,)) -> dict[str, float]:
    r = ranks.double()
    out: dict[str, float] = {}
    for k in ks:
        hit = r < k
        out[f"hr@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(r + 2.0), 0.0).mean().item()
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / (r + 1.0), 0.0).mean().item()
    return out


@torch.no_grad()
def rank_examples(
    model: SequentialRecommender,
    tables: FeatureTables,
    examples: Sequence[Example],
    batch_size: int = 256,
) -> Tensor:
    """0-based rank of each example's target item under full ranking."""
    was_training = model.training
    model.eval()
    use_content = model.cfg.use_content
    reps = model.item_representations(tables.item_content(use_content), tables.id_index)
    ranks = []
    for batch in example_batches(examples, batch_size, model.cfg.max_len):
        state = model.user_state(*tables.inputs(batch, use_content))
        ranks.append(ranks_from_scores(state @ reps.T, batch.target[:, -1], batch.seen))
    model.train(was_training)
    return torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.int64)


def evaluate(
    model: SequentialRecommender,
    tables: FeatureTables,
    examples: Sequence[Example],
    ks: Sequence[int] = (10,),
    batch_size: int = 256,
) -> dict[str, float]:
    """HR@K, NDCG@K and MRR@K over ``examples`` (leave-one-out, full ranking, history filtered)."""
    return metrics_from_ranks(rank_examples(model, tables, examples, batch_size), ks)
