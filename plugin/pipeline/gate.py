"""The proactive gate: should anything be surfaced now?

A cosine similarity is not a probability and its scale depends on the encoder, so the gate
maps the best candidate's score through a logistic curve, ``relevance = 1 / (1 + exp(-scale *
(score - center)))``, and surfaces when relevance reaches the threshold. ``fit_gate`` fits
center and scale on labelled decisions (yours: logs of surfaced suggestions that were clicked
or dismissed), so the threshold keeps one meaning: the estimated chance that surfacing is right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np

#: Feedback that says a surfaced suggestion was worth showing (``Event.type``).
POSITIVE_EVENTS: tuple[str, ...] = ("click", "read", "add_to_cart", "purchase", "rate")


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

    def score_of(self, relevance: float) -> float:
        """The raw score this gate maps to ``relevance`` (the inverse of ``relevance``).

        Impressions store calibrated relevance, rounded; this recovers the raw similarity so
        logs written under one gate can calibrate another.
        """
        r = min(max(float(relevance), 1e-6), 1 - 1e-6)
        return self.center + math.log(r / (1 - r)) / self.scale

    def with_threshold(self, threshold: float) -> Gate:
        return replace(self, threshold=float(threshold))


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


# ---------------------------------------------------------------------------------------------
# calibration on a deployment's own decisions
# ---------------------------------------------------------------------------------------------
def precision_recall(gate: Gate, scores: Sequence[float], labels: Sequence[bool]) -> dict:
    """What ``gate`` would have done on labelled decisions: precision, recall, surface rate."""
    opened = np.array([gate.opens(float(s)) for s in scores], dtype=bool)
    y = np.asarray(labels, dtype=bool)
    tp = int((opened & y).sum())
    return {"precision": tp / int(opened.sum()) if opened.any() else float("nan"),
            "recall": tp / int(y.sum()) if y.any() else float("nan"),
            "surface_rate": float(opened.mean()) if len(y) else float("nan"),
            "n": int(len(y))}


def threshold_for_precision(gate: Gate, scores: Sequence[float], labels: Sequence[bool],
                            precision: float, min_support: int = 10) -> float:
    """The lowest threshold at which surfaced decisions reach ``precision`` on these data.

    Candidates are the relevances of the decisions themselves; a threshold must keep at least
    ``min_support`` surfaced decisions, so a lucky handful cannot set it. Returns 1.0 (never
    surface) when no threshold reaches the target.
    """
    rel = np.array([gate.relevance(float(s)) for s in scores])
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-rel, kind="mergesort")
    hits = np.cumsum(y[order])
    shown = np.arange(1, len(rel) + 1)
    best = 1.0
    for i in range(len(rel)):  # surfacing the top i+1 decisions
        if i + 1 < len(rel) and rel[order[i + 1]] == rel[order[i]]:
            continue  # a threshold cannot split ties
        if shown[i] >= min_support and hits[i] / shown[i] >= precision:
            best = float(rel[order[i]])
    return best


def calibrate(scores: Sequence[float], labels: Sequence[bool], *, threshold: float = 0.5,
              precision: float | None = None, min_support: int = 10) -> Gate:
    """Fit the logistic curve on (raw score, was-right) pairs and pick the threshold.

    With ``precision`` the threshold is the lowest that reaches it on these data (see
    ``threshold_for_precision``); otherwise ``threshold`` is kept, and means "surface when the
    estimated chance of being right is at least this".
    """
    gate = fit_gate(scores, labels, threshold=threshold)
    if precision is not None:
        gate = gate.with_threshold(
            threshold_for_precision(gate, scores, labels, precision, min_support))
    return gate


def read_labelled_jsonl(path: str | Path, gate: Gate | None = None
                        ) -> tuple[list[float], list[bool]]:
    """(scores, labels) from JSONL lines ``{"score": cosine, "label": true}``.

    A line may give ``relevance`` (what impressions store) instead of ``score``; it is mapped
    back to a raw score through ``gate``, the gate that was in force when it was logged.
    ``label`` may be a bool or 0/1. Bad lines raise ``ValueError`` naming FILE:LINE.
    """
    scores: list[float] = []
    labels: list[bool] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if "score" in row:
                    score = float(row["score"])
                elif "relevance" in row:
                    if gate is None:
                        raise ValueError("'relevance' needs the gate it was logged under")
                    score = gate.score_of(float(row["relevance"]))
                else:
                    raise ValueError("needs 'score' or 'relevance'")
                label = row["label"]
                if label not in (True, False, 0, 1):
                    raise ValueError(f"label must be true/false or 0/1, not {label!r}")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
            scores.append(score)
            labels.append(bool(label))
    return scores, labels


class _History(Protocol):
    """What ``decisions_from_history`` reads (``convrec.history.HistoryStore`` has it)."""

    def users(self, tenant: str = ...) -> list[str]: ...

    def history(self, user_id: str, tenant: str = ..., limit: int | None = ...) -> Any: ...


def decisions_from_history(
    store: _History, gate: Gate, *, tenant: str = "default",
    positive_events: Iterable[str] = POSITIVE_EVENTS, window: timedelta = timedelta(hours=24),
    unanswered: str = "negative",
) -> tuple[list[float], list[bool]]:
    """(raw scores, labels) of the surfacing decisions logged in a history store.

    A decision is one surfaced suggestion list (the impressions of one conversation logged at
    one time); its score is the list's highest relevance (what the gate read: the best content
    match, whatever rank a personalised re-ranking gave it), mapped back through ``gate``, the
    gate that was in force. It is positive when the user clicked, read, bought, ... any of its items
    within ``window`` afterwards (in the same conversation when the event names one); a
    dismissal or no reaction is negative (``unanswered="skip"`` leaves decisions without any
    feedback out instead).

    Only surfaced decisions are logged, so these data say nothing below the threshold in
    force: lower it for a while (or log silent decisions) to calibrate the lower range.
    """
    positive = set(positive_events)
    scores: list[float] = []
    labels: list[bool] = []
    for user in store.users(tenant):
        h = store.history(user, tenant=tenant)
        decisions: dict[tuple, list] = {}
        for imp in h.impressions:
            if imp.surfaced:
                decisions.setdefault((imp.conversation_id, imp.ts), []).append(imp)
        for (conv, ts), imps in decisions.items():
            items = {i.item_id for i in imps}
            reactions = [e for e in h.events
                         if e.item_id in items and ts <= e.ts <= ts + window
                         and (conv is None or e.conversation_id in (None, conv))]
            liked = any(e.type in positive for e in reactions)
            if not reactions and unanswered == "skip":
                continue
            scores.append(gate.score_of(max(i.score for i in imps)))
            labels.append(liked)
    return scores, labels
