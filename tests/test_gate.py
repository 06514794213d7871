"""The proactive gate: the logistic curve, its fitting, AUC and calibration helpers."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from convrec.pipeline.feedback import decisions_from_history
from convrec.pipeline.gate import (
    Gate,
    auc,
    calibrate,
    fit_gate,
    precision_recall,
    read_labelled_jsonl,
    threshold_for_precision,
)


def test_relevance_is_the_logistic_curve_and_inverts():
    gate = Gate(center=0.4, scale=10.0, threshold=0.5)
    assert gate.relevance(0.4) == pytest.approx(0.5)
    assert gate.relevance(0.5) == pytest.approx(1 / (1 + math.exp(-1)))
    assert gate.relevance(10.0) <= 1.0 and gate.relevance(-10.0) >= 0.0
    for score in (0.1, 0.35, 0.4, 0.62):
        assert gate.score_of(gate.relevance(score)) == pytest.approx(score, abs=1e-9)
    assert gate.opens(0.41) and not gate.opens(0.39)
    assert gate.with_threshold(0.9).threshold == 0.9


def test_fit_gate_recovers_a_known_logistic_curve():
    rng = np.random.default_rng(0)
    center, scale = 0.45, 12.0
    x = rng.uniform(0.0, 0.9, 20000)
    y = rng.random(20000) < 1 / (1 + np.exp(-scale * (x - center)))
    gate = fit_gate(x, y, threshold=0.7)
    assert gate.center == pytest.approx(center, abs=0.01)
    assert gate.scale == pytest.approx(scale, rel=0.08)
    assert gate.threshold == 0.7


def test_fit_gate_refuses_one_class_and_inverted_scores():
    with pytest.raises(ValueError):
        fit_gate([0.1, 0.2, 0.3], [True, True, True])
    with pytest.raises(ValueError):
        fit_gate([0.1, 0.2, 0.3, 0.4], [True, True, False, False])


def test_auc_matches_a_hand_computed_example():
    # positives 0.9, 0.4, 0.6 ; negatives 0.5, 0.4, 0.1
    # pairs (p > n): 0.9 beats 3; 0.6 beats 3; 0.4 beats 0.1, ties 0.4 (half), loses to 0.5
    # = (3 + 3 + 1 + 0.5) / 9
    scores = [0.9, 0.5, 0.4, 0.6, 0.4, 0.1]
    labels = [True, False, True, True, False, False]
    assert auc(scores, labels) == pytest.approx(7.5 / 9)
    assert auc([1, 2], [True, True]) != auc([1, 2], [True, True])  # nan: one class
    assert auc([0.1, 0.9], [False, True]) == 1.0
    assert auc([0.1, 0.9], [True, False]) == 0.0


def test_precision_recall_and_threshold_for_precision():
    gate = Gate(center=0.5, scale=10.0, threshold=0.5)
    scores = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3]
    labels = [True, True, False, True, False, False]
    pr = precision_recall(gate, scores, labels)
    assert pr["precision"] == pytest.approx(3 / 4)
    assert pr["recall"] == pytest.approx(1.0)
    assert pr["surface_rate"] == pytest.approx(4 / 6)
    # 100% precision is reached by surfacing only the top two
    t = threshold_for_precision(gate, scores, labels, precision=1.0, min_support=1)
    assert t == pytest.approx(gate.relevance(0.8))
    assert threshold_for_precision(gate, scores, labels, 1.0, min_support=3) == 1.0
    # the lowest threshold reaching 75% keeps the top four
    t = threshold_for_precision(gate, scores, labels, precision=0.75, min_support=1)
    assert t == pytest.approx(gate.relevance(0.6))


def test_calibrate_fits_then_picks_a_threshold():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 4000)
    y = rng.random(4000) < 1 / (1 + np.exp(-8 * (x - 0.5)))
    plain = calibrate(x, y, threshold=0.6)
    assert plain.threshold == 0.6
    strict = calibrate(x, y, precision=0.9)
    assert precision_recall(strict, x, y)["precision"] >= 0.9
    assert strict.threshold > plain.relevance(0.5)


def test_read_labelled_jsonl(tmp_path):
    gate = Gate(center=0.4, scale=10.0, threshold=0.5)
    path = tmp_path / "labels.jsonl"
    path.write_text("\n".join([
        json.dumps({"score": 0.7, "label": True}),
        "",
        json.dumps({"relevance": 0.5, "label": 0}),
    ]) + "\n")
    scores, labels = read_labelled_jsonl(path, gate)
    assert scores == pytest.approx([0.7, 0.4])
    assert labels == [True, False]
    path.write_text(json.dumps({"score": 0.2, "label": True}) + "\n"
                    + json.dumps({"score": 0.2, "label": "yes"}) + "\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:2"):
        read_labelled_jsonl(path)
    path.write_text(json.dumps({"relevance": 0.2, "label": True}) + "\n")
    with pytest.raises(ValueError, match=r":1: .*gate"):
        read_labelled_jsonl(path)


def _store(impressions, events):
    """A stand-in with the two methods decisions_from_history reads."""
    history = SimpleNamespace(impressions=impressions, events=events)
    return SimpleNamespace(users=lambda tenant="default": ["u1"],
                           history=lambda user, tenant="default", limit=None: history)


def test_decisions_from_history_labels_each_surfaced_list():
    gate = Gate(center=0.4, scale=10.0, threshold=0.5)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    imp = lambda item, rank, rel, conv, ts, surfaced=True: SimpleNamespace(  # noqa: E731
        item_id=item, rank=rank, score=rel, conversation_id=conv, ts=ts, surfaced=surfaced)
    ev = lambda item, kind, conv, ts: SimpleNamespace(  # noqa: E731
        item_id=item, type=kind, conversation_id=conv, ts=ts)
    impressions = [
        imp("a", 1, 0.8, "c1", t0), imp("b", 2, 0.6, "c1", t0),           # clicked b: positive
        imp("c", 1, 0.7, "c2", t0 + timedelta(minutes=5)),                # dismissed: negative
        imp("d", 1, 0.55, "c3", t0 + timedelta(minutes=9)),               # no reaction
        imp("e", 1, 0.9, "c4", t0, surfaced=False),                       # never shown
    ]
    events = [
        ev("b", "click", "c1", t0 + timedelta(seconds=30)),
        ev("c", "dismiss", "c2", t0 + timedelta(minutes=6)),
        ev("a", "click", "c9", t0 + timedelta(minutes=1)),                # other conversation
        ev("d", "purchase", "c3", t0 + timedelta(days=3)),                # outside the window
    ]
    scores, labels = decisions_from_history(_store(impressions, events), gate)
    assert labels == [True, False, False]
    assert scores == pytest.approx([gate.score_of(0.8), gate.score_of(0.7), gate.score_of(0.55)])
    scores, labels = decisions_from_history(_store(impressions, events), gate,
                                            unanswered="skip")
    assert labels == [True, False]


def test_decisions_from_a_real_history_store(tmp_path):
    history = pytest.importorskip("convrec.history")
    from convrec.types import Event, Suggestion

    gate = Gate(center=0.4, scale=10.0, threshold=0.5)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    sug = lambda i, rel: Suggestion(id=i, kind="article", title=i, score=rel, reason="")  # noqa: E731
    with history.HistoryStore(tmp_path / "h.sqlite") as store:
        store.log_impressions("u1", "c1", [sug("a", 0.8), sug("b", 0.6)], True, ts=t0)
        store.log_impressions("u1", "c2", [sug("c", 0.7)], True,
                              ts=t0 + timedelta(minutes=5))
        store.log_event(Event(user_id="u1", item_id="b", type="click", conversation_id="c1",
                              ts=t0 + timedelta(seconds=20)))
        scores, labels = decisions_from_history(store, gate)
    got = sorted(zip(scores, labels, strict=True))
    assert [label for _, label in got] == [False, True]
    assert [s for s, _ in got] == pytest.approx([gate.score_of(0.7), gate.score_of(0.8)])


def test_the_log_readers_stay_importable_from_the_gate_module():
    from convrec.pipeline import feedback, gate

    for name in ("POSITIVE_EVENTS", "logged_decisions", "logged_clicks",
                 "decisions_from_history"):
        assert getattr(gate, name) is getattr(feedback, name)
    with pytest.raises(AttributeError):
        _ = gate.no_such_name
