"""The proactive gate: should anything be surfaced now?

A cosine similarity is not a probability and its scale depends on the encoder, so the gate
maps the best candidate's score through a logistic curve, ``relevance = 1 / (1 + exp(-scale *
(score - center)))``, and surfaces when relevance reaches the threshold. ``fit_gate`` fits
center and scale on labelled decisions (yours: logs of surfaced suggestions that were clicked
or dismissed), so the threshold keeps one meaning: the estimated chance that surfacing is right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Gate:
    center: float
    scale: float
    threshold: float

    def relevance(self, score: float) -> float:
        """Calibrated relevance (0..1) of a raw similarity score."""
        z = self.scale * (score - self.center)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def opens(self, score: float) -> bool:
        return self.relevance(score) >= self.threshold


def fit_gate(scores: Sequence[float], labels: Sequence[bool], threshold: float = 0.5,
             l2: float = 1e-3, steps: int = 500) -> Gate:
    """Fit a 1-D logistic regression (Newton's method) of labels on scores."""
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(x) < 2 or y.min() == y.max():
        raise ValueError("fit_gate needs both positive and negative examples")
    a, b = 1.0, 0.0  # logit = a * x + b
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(a * x + b)))
        grad = np.array([((p - y) * x).sum() + l2 * a, (p - y).sum()])
        w = p * (1 - p)
        hess = np.array([[(w * x * x).sum() + l2, (w * x).sum()],
                         [(w * x).sum(), w.sum() + 1e-9]])
        step = np.linalg.solve(hess, grad)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    if a <= 0:
        raise ValueError("scores do not rank positives above negatives; cannot calibrate")
    return Gate(center=float(-b / a), scale=float(a), threshold=threshold)


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (ties count half)."""
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not pos or not neg:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))
