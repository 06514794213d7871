"""Training loop: softmax cross-entropy over the catalogue, early stopping on validation NDCG@10."""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from convrec.model.config import ModelConfig, TrainConfig
from convrec.model.data import Example, FeatureTables, UserSequence, training_batches
from convrec.model.evaluate import evaluate
from convrec.model.network import SequentialRecommender


@dataclass
class TrainResult:
    model: SequentialRecommender  # in eval mode, best weights restored
    best_epoch: int
    best_valid: dict[str, float]
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _FullSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ weight.T``, gradients formed in the forward pass.

    Same value and gradients as ``F.cross_entropy(hidden @ weight.T, target)``, but the
    [positions x items] logits are never held whole: rows go through in chunks small enough
    to stay in cache, each chunk's softmax turns into its gradient in place, and only the two
    small gradients are kept for backward. On 2 CPU cores this is about 2.5x faster than
    ``F.cross_entropy`` on MovieLens-sized batches, where the loss is most of a training step.
    The reported value is exact unless a target's probability underflows (loss > ~87).
    """

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, target: Tensor, chunk: int) -> Tensor:  # type: ignore[override]
        n = len(target)
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight)
        total = hidden.new_zeros(())
        for start in range(0, n, chunk):
            h, t = hidden[start : start + chunk], target[start : start + chunk]
            probs = torch.softmax(h @ weight.T, dim=1)
            rows = torch.arange(len(t))
            total -= probs[rows, t].clamp_min(torch.finfo(probs.dtype).tiny).log().sum()
            probs[rows, t] -= 1.0  # d loss / d logits, times n
            grad_hidden[start : start + chunk] = probs @ weight
            grad_weight.addmm_(probs.T, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.n = n
        return total / max(n, 1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, None, None]:  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        scale = grad / max(ctx.n, 1)
        return grad_hidden * scale, grad_weight * scale, None, None


def full_softmax_loss(
    hidden: Tensor, target: Tensor, item_reps: Tensor, chunk: int = 512
) -> Tensor:
    """Cross-entropy of targets (catalogue indices >= 1) over all N items (SASRec+)."""
    return _FullSoftmaxCE.apply(hidden, item_reps[1:], target - 1, chunk)


def sampled_softmax_loss(
    hidden: Tensor, target: Tensor, item_reps: Tensor, log_q: Tensor, n_negatives: int
) -> Tensor:
    """Cross-entropy over the target and shared negatives drawn from q, with log-q correction.

    ``log_q`` [N + 1] is the log sampling probability of each item (row 0 unused).
    """
    negatives = torch.multinomial(log_q[1:].exp(), n_negatives, replacement=True) + 1
    pos = (hidden * item_reps[target]).sum(-1, keepdim=True) - log_q[target, None]
    neg = hidden @ item_reps[negatives].T - log_q[negatives][None, :]
    neg = neg.masked_fill(negatives[None, :] == target[:, None], float("-inf"))  # accidental hits
    logits = torch.cat([pos, neg], dim=1)
    return F.cross_entropy(logits, torch.zeros_like(target))


def _target_log_q(sequences: Sequence[UserSequence], n_items: int) -> Tensor:
    counts = np.ones(n_items + 1, dtype=np.float64)  # add-one smoothing
    for seq in sequences:
        counts += np.bincount(seq.next_targets(), minlength=n_items + 1)
    counts[0] = 0.0
    return torch.from_numpy(np.log(np.maximum(counts / counts.sum(), 1e-30))).float()


def train(
    model_config: ModelConfig,
    train_config: TrainConfig,
    tables: FeatureTables,
    sequences: Sequence[UserSequence],
    valid: Sequence[Example] | None = None,
) -> TrainResult:
    """Train a fresh model on ``sequences``; with ``valid``, stop early on NDCG@10 and keep the
    best epoch's weights, otherwise run ``train_config.epochs`` epochs."""
    tc = train_config
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    seed_everything(tc.seed)
    rng = np.random.default_rng(tc.seed)
    model = SequentialRecommender(model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    log_q = _target_log_q(sequences, tables.n_items) if tc.loss == "sampled" else None
    use_content = model_config.use_content
    item_content = tables.item_content(use_content)

    start = time.perf_counter()
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_valid, best_state = -1.0, 0, {}, None
    stale = 0
    epoch = 0
    n_batches = -(-len(sequences) // tc.batch_size)
    total_steps, step = tc.epochs * n_batches, 0
    for epoch in range(1, tc.epochs + 1):
        model.train()
        total, steps = 0.0, 0
        bar = tqdm(
            training_batches(
                sequences, tc.batch_size, model_config.max_len, rng, tc.random_windows
            ),
            total=n_batches,
            desc=f"epoch {epoch}",
            leave=False,
            disable=None if tc.progress else True,  # None: a bar on terminals only
        )
        for batch in bar:
            if tc.lr_schedule == "cosine":
                done = step / total_steps
                if tc.max_seconds:
                    done = max(done, (time.perf_counter() - start) / tc.max_seconds)
                for group in optimizer.param_groups:
                    group["lr"] = tc.lr * 0.5 * (1.0 + math.cos(math.pi * min(done, 1.0)))
            step += 1
            hidden = model(*tables.inputs(batch, use_content))
            has_target = batch.target > 0
            hidden, target = hidden[has_target], batch.target[has_target]
            item_reps = model.item_representations(item_content, tables.id_index)
            if log_q is None:
                loss = full_softmax_loss(hidden, target, item_reps)
            else:
                loss = sampled_softmax_loss(hidden, target, item_reps, log_q, tc.n_negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
            bar.set_postfix(loss=f"{total / steps:.4f}")
        row = {"epoch": float(epoch), "loss": total / max(steps, 1)}
        row["lr"] = optimizer.param_groups[0]["lr"]
        elapsed = time.perf_counter() - start
        out_of_time = tc.max_seconds is not None and elapsed >= tc.max_seconds
        if valid and (epoch % tc.eval_every == 0 or epoch == tc.epochs or out_of_time):
            scores = evaluate(model, tables, valid, ks=(10,), batch_size=tc.eval_batch_size)
            row.update({f"valid_{k}": v for k, v in scores.items()})
            if scores["ndcg@10"] > best_score:
                best_score, best_epoch, best_valid = scores["ndcg@10"], epoch, scores
                best_state = copy.deepcopy(model.state_dict())
                stale = 0
            else:
                stale += 1
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        if tc.progress:
            tqdm.write(" ".join(f"{k}={v:.4g}" for k, v in row.items()))
        if (valid and stale >= tc.patience) or out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epoch
    model.eval()
    return TrainResult(
        model=model,
        best_epoch=best_epoch,
        best_valid=best_valid,
        epochs_run=epoch,
        seconds=time.perf_counter() - start,
        history=history,
    )
