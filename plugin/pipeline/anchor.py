"""Anchor the gate's curve on any encoder, without labels.

The shipped curve (``gate_center`` 0.42, ``gate_scale`` 14) was fitted for the packaged
all-MiniLM-L6-v2. Another encoder (a larger model, MiniLM adapted to your knowledge base, a
CLIP model) has its own cosine scale, and before there are logs to calibrate on
(``convrec calibrate``) the fixed curve can be far off: it surfaces everything when cosines run
high and nothing when they run low.

The anchor reads where "unrelated" lies for this encoder on these items. A fixed set of
everyday chat lines that no knowledge base should answer (``reference_chat.txt``) is sent
through the index; the median and the interquartile range of their best-match cosines
describe the off-topic floor. The curve is moved to sit as far above that floor, in units of
its spread, as the shipped curve sits above packaged MiniLM's::

    center = gate_center + (median - REFERENCE_MEDIAN) * 1          (same distance above)
    scale  = gate_scale * REFERENCE_SPREAD / spread                  (same steepness per spread)

so packaged MiniLM on a ~200-item knowledge base gets (almost) the shipped curve back.

The reference is a median, so a few lines that your items do answer (a shop's knowledge base
will match "how do I knit a scarf?" to its wool) move it little. It grows slowly with the
number of items (the best of more items is higher). A gate fitted on your own decisions
(``gate.json``) always takes precedence.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel

from convrec.pipeline.gate import Gate

#: The median best-match cosine of ``reference_chat.txt`` with the packaged all-MiniLM-L6-v2,
#: averaged over the example world (199 items: 0.200) and the COVID FAQ (213 articles: 0.209).
REFERENCE_MEDIAN = 0.204
#: Their interquartile range, averaged the same way (0.076 and 0.113).
REFERENCE_SPREAD = 0.094
#: The anchored scale stays within this factor of ``gate_scale`` (a degenerate spread, e.g.
#: an index of one item, must not make the curve a step or a flat line).
MAX_SCALE_FACTOR = 4.0
#: The fewest reference lines that must find an item before the anchor is trusted.
MIN_REFERENCE_HITS = 20


class GateAnchor(BaseModel):
    """Where the off-topic floor lies for one encoder on one index, and the curve it gives."""

    encoder: str
    n_items: int
    n_reference: int
    median: float
    spread: float
    center: float
    scale: float


class GateInForce(BaseModel):
    """Which curve ``suggest`` reads now, and where it comes from: ``fitted`` (``gate.json``,
    from ``convrec calibrate``), ``anchored`` (the settings' curve moved onto this encoder,
    see ``anchor``) or ``settings`` (``gate_center``/``gate_scale`` as they are)."""

    source: Literal["fitted", "anchored", "settings"]
    center: float
    scale: float
    threshold: float
    intent: bool
    path: str | None = None
    anchor: GateAnchor | None = None


def reference_texts() -> list[str]:
    """The shipped off-topic chat lines (``reference_chat.txt``)."""
    raw = files("convrec.pipeline").joinpath("reference_chat.txt").read_text(encoding="utf-8")
    return [line.strip() for line in raw.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def reference_digest() -> str:
    """A short hash of the reference lines: a saved anchor measured with other lines is stale."""
    return hashlib.sha256("\n".join(reference_texts()).encode()).hexdigest()[:12]


def anchored_curve(center: float, scale: float, best_scores: Sequence[float]
                   ) -> tuple[float, float, float, float]:
    """(center, scale, median, spread): the curve ``(center, scale)`` moved onto the off-topic
    floor that ``best_scores`` (the reference lines' best-match cosines) describe."""
    x = np.asarray(best_scores, dtype=np.float64)
    if x.size < 2:
        raise ValueError("anchoring needs at least two reference scores")
    q25, median, q75 = (float(v) for v in np.quantile(x, [0.25, 0.5, 0.75]))
    spread = q75 - q25
    factor = (REFERENCE_SPREAD / spread) if spread > 0 else MAX_SCALE_FACTOR
    factor = min(max(factor, 1 / MAX_SCALE_FACTOR), MAX_SCALE_FACTOR)
    return center + (median - REFERENCE_MEDIAN), scale * factor, median, spread


def measure_anchor(encoder, index, base: Gate, where, *, n_items: int,
                   texts: Sequence[str] | None = None) -> GateAnchor | None:
    """Send the reference lines through ``index`` (``where`` = the tenant's filter) and anchor
    ``base``'s curve on their best matches. ``None`` when too few lines find an item."""
    texts = list(texts) if texts is not None else reference_texts()
    vectors = encoder.encode_queries(texts)
    best = []
    for vector in vectors:
        hits = index.query(np.asarray(vector, dtype=np.float32), 1, where)
        if hits:
            best.append(float(hits[0].score))
    if len(best) < min(MIN_REFERENCE_HITS, len(texts)):
        return None
    center, scale, median, spread = anchored_curve(base.center, base.scale, best)
    return GateAnchor(encoder=encoder.name, n_items=n_items, n_reference=len(best),
                      median=round(median, 4), spread=round(spread, 4),
                      center=round(center, 4), scale=round(scale, 3))


def read_saved_anchor(path: Path, key: Sequence) -> GateAnchor | None:
    """The anchor ``save_anchor`` kept at ``path`` if it was measured under ``key`` (encoder,
    tenant, item count, curve) with these reference lines; else ``None``."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["key"] != [*key, reference_digest()]:
            return None
        return GateAnchor.model_validate(saved["anchor"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # none yet, or unreadable: measure again


def save_anchor(path: Path, key: Sequence, anchor: GateAnchor) -> None:
    """Keep ``anchor`` at ``path`` (atomically) for the next process; a workspace that cannot
    be written costs a measurement next time, not the call."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": [*key, reference_digest()],
                                   "anchor": anchor.model_dump()}), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        warnings.warn(f"gate anchor not saved to {path}: {exc}", stacklevel=3)
