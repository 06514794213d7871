"""The proactive gate: should anything be surfaced now?

A cosine similarity is not a probability and its scale depends on the encoder, so the gate
maps the best candidate's score through a logistic curve, ``relevance = 1 / (1 + exp(-scale *
(score - center)))``, and surfaces when relevance reaches the threshold. ``fit_gate`` fits
center and scale on labelled decisions (yours: logs of surfaced suggestions that were clicked
or dismissed), so the threshold keeps one meaning: the estimated chance that surfacing is right.

Content relevance alone cannot tell "which tent is lighter?" (wants a suggestion) from "thanks,
bye" after the same chat. Fitted with the vectors of each decision's last user turn, the gate
also learns ``intent`` weights over that vector, a term added to the log-odds: what the user's
own words say about wanting a suggestion now. On ReDial this raised the gate's AUC from 0.56
to 0.72 (``benchmarks/redial.py``). Such a gate is saved as JSON (``save``/``load``) and is
tied to the encoder whose vectors it reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel


@dataclass(frozen=True)
class Gate:
    """The logistic curve from a similarity (plus, optionally, the last user turn) to relevance.

    ``intent`` holds log-odds weights over the last user turn's vector (empty: the gate reads
    content relevance only); ``encoder`` names the encoder those vectors come from.
    """

    center: float
    scale: float
    threshold: float
    intent: tuple[float, ...] = ()
    encoder: str | None = None
    _intent: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.intent:
            object.__setattr__(self, "_intent", np.asarray(self.intent, dtype=np.float32))

    def intent_logit(self, turn_vector: np.ndarray | None) -> float:
        """The log-odds the last user turn adds (0 without intent weights or a turn)."""
        if self._intent is None or turn_vector is None:
            return 0.0
        if len(turn_vector) != len(self._intent):
            raise ValueError(f"the gate's intent weights read {len(self._intent)}-d vectors, "
                             f"got {len(turn_vector)}-d: was it fitted with another encoder?")
        return float(self._intent @ np.asarray(turn_vector, dtype=np.float32))

    def relevance(self, score: float, turn_vector: np.ndarray | None = None) -> float:
        """Calibrated relevance (0..1) of a raw similarity score (and the last user turn)."""
        z = self.scale * (score - self.center) + self.intent_logit(turn_vector)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))

    def opens(self, score: float, turn_vector: np.ndarray | None = None) -> bool:
        return self.relevance(score, turn_vector) >= self.threshold

    def score_of(self, relevance: float, turn_vector: np.ndarray | None = None) -> float:
        """The raw score this gate maps to ``relevance`` (the inverse of ``relevance``).

        Impressions store calibrated relevance, rounded; this recovers the raw similarity so
        logs written under one gate can calibrate another. A gate with intent weights needs
        the same last user turn's vector it read then.
        """
        r = min(max(float(relevance), 1e-6), 1 - 1e-6)
        return self.center + (math.log(r / (1 - r)) - self.intent_logit(turn_vector)) / self.scale

    def with_threshold(self, threshold: float) -> Gate:
        return replace(self, threshold=float(threshold))

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"center": self.center, "scale": self.scale, "threshold": self.threshold,
                "intent": [round(float(w), 6) for w in self.intent], "encoder": self.encoder}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Gate:
        return cls(center=float(data["center"]), scale=float(data["scale"]),
                   threshold=float(data["threshold"]),
                   intent=tuple(float(w) for w in data.get("intent") or ()),
                   encoder=data.get("encoder"))

    def save(self, path: str | Path) -> Path:
        """Write the gate as JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Gate:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a gate file ({exc})") from exc


class GateCalibration(BaseModel):
    """What ``Recommender.calibrate_gate`` fitted, on how much, and how well it separates.

    ``auc`` is the fitted gate's (in sample), ``auc_before`` the raw similarity's alone;
    ``in_sample`` is precision / recall / surface rate at the fitted threshold.
    """

    gate: dict[str, Any]
    n_decisions: int
    n_positive: int
    n_with_text: int
    intent: bool
    auc: float
    auc_before: float
    in_sample: dict[str, float]
    path: str | None = None


#: The least slope (log-odds per unit of cosine) an intent-aware gate keeps on similarity.
MIN_INTENT_GATE_SCALE = 1.0


def fit_gate(scores: Sequence[float], labels: Sequence[bool], threshold: float = 0.5,
             l2: float = 1e-3, steps: int = 100, *,
             turn_vectors: np.ndarray | None = None, intent_l2: float = 1.0,
             encoder: str | None = None) -> Gate:
    """Fit a logistic regression (Newton's method) of labels on scores.

    With ``turn_vectors`` [N, dim] (each decision's last user turn; zeros where there was
    none) it also learns the gate's ``intent`` weights, L2-penalised by ``intent_l2``. Should
    the user's words explain the decisions so well that similarity gets a slope below
    ``MIN_INTENT_GATE_SCALE``, the slope is held there and the rest refitted: a gate must never
    prefer worse matches.
    """
    x = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if len(x) < 2 or y.min() == y.max():
        raise ValueError("fit_gate needs both positive and negative examples")
    if turn_vectors is None:
        a, b = _newton(np.c_[x, np.ones(len(x))], y, np.array([l2, 0.0]), steps)
        if a <= 0:
            raise ValueError("scores do not rank positives above negatives; cannot calibrate")
        return Gate(center=float(-b / a), scale=float(a), threshold=threshold)
    v = np.asarray(turn_vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] != len(x):
        raise ValueError(f"{v.shape[0] if v.ndim else 0} turn vectors for {len(x)} decisions")
    penalty = np.array([l2, 0.0] + [intent_l2] * v.shape[1])
    theta = _newton(np.c_[x, np.ones(len(x)), v], y, penalty, steps)
    if theta[0] < MIN_INTENT_GATE_SCALE:
        rest = _newton(np.c_[np.ones(len(x)), v], y, penalty[1:], steps,
                       offset=MIN_INTENT_GATE_SCALE * x)
        theta = np.r_[MIN_INTENT_GATE_SCALE, rest]
    a, b = float(theta[0]), float(theta[1])
    return Gate(center=-b / a, scale=a, threshold=threshold,
                intent=tuple(float(w) for w in theta[2:]), encoder=encoder)


def _newton(design: np.ndarray, y: np.ndarray, penalty: np.ndarray, steps: int,
            offset: np.ndarray | float = 0.0) -> np.ndarray:
    """L2-penalised logistic regression ``logit = offset + design @ theta`` by Newton's method
    (the first coefficient starts at 1, the rest at 0)."""
    reg = np.diag(penalty)
    theta = np.zeros(design.shape[1])
    theta[0] = 1.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(offset + design @ theta, -50, 50)))
        grad = design.T @ (p - y) + reg @ theta
        hess = (design * (p * (1 - p))[:, None]).T @ design + reg + 1e-9 * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta


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
def relevances(gate: Gate, scores: Sequence[float],
               turn_vectors: np.ndarray | None = None) -> np.ndarray:
    """``gate.relevance`` of each decision (with its last user turn's vector, if given)."""
    if turn_vectors is None:
        return np.array([gate.relevance(float(s)) for s in scores])
    return np.array([gate.relevance(float(s), v)
                     for s, v in zip(scores, turn_vectors, strict=True)])


def precision_recall(gate: Gate, scores: Sequence[float], labels: Sequence[bool],
                     turn_vectors: np.ndarray | None = None) -> dict:
    """What ``gate`` would have done on labelled decisions: precision, recall, surface rate."""
    opened = relevances(gate, scores, turn_vectors) >= gate.threshold
    y = np.asarray(labels, dtype=bool)
    tp = int((opened & y).sum())
    return {"precision": tp / int(opened.sum()) if opened.any() else float("nan"),
            "recall": tp / int(y.sum()) if y.any() else float("nan"),
            "surface_rate": float(opened.mean()) if len(y) else float("nan"),
            "n": int(len(y))}


def threshold_for_precision(gate: Gate, scores: Sequence[float], labels: Sequence[bool],
                            precision: float, min_support: int = 10,
                            turn_vectors: np.ndarray | None = None) -> float:
    """The lowest threshold at which surfaced decisions reach ``precision`` on these data.

    Candidates are the relevances of the decisions themselves; a threshold must keep at least
    ``min_support`` surfaced decisions, so a lucky handful cannot set it. Returns 1.0 (never
    surface) when no threshold reaches the target.
    """
    rel = relevances(gate, scores, turn_vectors)
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
              precision: float | None = None, min_support: int = 10,
              turn_vectors: np.ndarray | None = None, encoder: str | None = None) -> Gate:
    """Fit the logistic curve on (raw score, was-right) pairs and pick the threshold.

    With ``precision`` the threshold is the lowest that reaches it on these data (see
    ``threshold_for_precision``); otherwise ``threshold`` is kept, and means "surface when the
    estimated chance of being right is at least this". With ``turn_vectors`` (each decision's
    last user turn, encoded by ``encoder``) the gate learns intent weights too.
    """
    gate = fit_gate(scores, labels, threshold=threshold, turn_vectors=turn_vectors,
                    encoder=encoder)
    if precision is not None:
        gate = gate.with_threshold(threshold_for_precision(
            gate, scores, labels, precision, min_support, turn_vectors))
    return gate


@dataclass(frozen=True)
class Decision:
    """One labelled surfacing decision: was surfacing right, and what the gate read then.

    ``score`` is the raw similarity when known; logs keep ``relevance`` instead (what the gate
    in force answered), which maps back to a score through that gate. ``text`` is the last user
    turn before the decision, when known: what an intent-aware gate learns from.
    """

    label: bool
    score: float | None = None
    relevance: float | None = None
    text: str | None = None
    source: str | None = None  # where it was read, e.g. "labels.jsonl:3"

    def raw_score(self, gate: Gate | None, turn_vector: np.ndarray | None = None) -> float:
        if self.score is not None:
            return self.score
        if gate is None or self.relevance is None:
            where = f"{self.source}: " if self.source else ""
            raise ValueError(f"{where}a decision with only a relevance needs the gate it was "
                             "logged under")
        return gate.score_of(self.relevance, turn_vector)


def read_decisions_jsonl(path: str | Path) -> list[Decision]:
    """Decisions from JSONL lines ``{"score": cosine, "label": true, "text": "..."}``.

    A line may give ``relevance`` (what impressions store) instead of ``score``; ``text`` (the
    last user turn before the decision) is optional. ``label`` may be a bool or 0/1. Bad lines
    raise ``ValueError`` naming FILE:LINE and the field.
    """
    out: list[Decision] = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("expected a JSON object")
                score = relevance = None
                if "score" in row:
                    score = _number(row, "score")
                elif "relevance" in row:
                    relevance = _number(row, "relevance")
                else:
                    raise ValueError("field 'score': needs 'score' or 'relevance'")
                if "label" not in row:
                    raise ValueError("field 'label': missing")
                label = row["label"]
                if label not in (True, False, 0, 1):
                    raise ValueError(f"field 'label': must be true/false or 0/1, not {label!r}")
                text = row.get("text")
                if text is not None and not isinstance(text, str):
                    raise ValueError(f"field 'text': must be a string, not {text!r}")
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
            out.append(Decision(bool(label), score, relevance, text or None,
                                source=f"{path}:{line_no}"))
    return out


def _number(row: dict, key: str) -> float:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {key!r}: must be a number, not {value!r}")
    return float(value)


def read_labelled_jsonl(path: str | Path, gate: Gate | None = None
                        ) -> tuple[list[float], list[bool]]:
    """(scores, labels) from a decisions file (see ``read_decisions_jsonl``).

    Lines with ``relevance`` are mapped back to a raw score through ``gate``, the gate that was
    in force when they were logged (a gate without intent weights).
    """
    decisions = read_decisions_jsonl(path)
    return [d.raw_score(gate) for d in decisions], [d.label for d in decisions]


# What the history says about past decisions lives in ``convrec.pipeline.feedback``; these
# names stay importable from here.
_FEEDBACK_NAMES = ("POSITIVE_EVENTS", "logged_decisions", "logged_clicks",
                   "decisions_from_history")


def __getattr__(name: str) -> Any:
    if name in _FEEDBACK_NAMES:
        from convrec.pipeline import feedback

        return getattr(feedback, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
