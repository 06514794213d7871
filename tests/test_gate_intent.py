"""The intent-aware gate: weights over the last user turn, fitted on labelled decisions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convrec.pipeline.gate import Decision, Gate, auc, fit_gate, read_decisions_jsonl

ASKING = [
    "Can you recommend a tent for two people?",
    "Which sleeping bag would you suggest for winter?",
    "I'm looking for a good stove, any ideas?",
    "What backpack should I buy for a week-long hike?",
    "Do you have something like a lightweight rain jacket?",
    "Could you point me to an article about returns?",
    "Any suggestions for a warm jacket?",
    "What would you recommend for a beginner?",
]
CLOSING = [
    "Thanks, that's all for today.",
    "Great, bye!",
    "Ok, thank you so much.",
    "No, I'm fine, thanks.",
    "Cheers, have a nice day.",
    "That answers it, goodbye.",
    "Alright, thanks for your help.",
    "Perfect, see you.",
]


def synthetic_decisions(rng: np.random.Generator, n: int = 600, dim: int = 8):
    scores = rng.uniform(0.2, 0.7, n)
    vectors = rng.normal(size=(n, dim))
    labels = rng.random(n) < 1 / (1 + np.exp(-(4 * vectors[:, 0] + 6 * (scores - 0.45))))
    return scores, vectors, labels


def test_fit_gate_learns_what_the_last_turn_says():
    scores, vectors, labels = synthetic_decisions(np.random.default_rng(0))
    plain = fit_gate(scores, labels)
    aware = fit_gate(scores, labels, turn_vectors=vectors, encoder="enc")
    assert not plain.intent and plain.encoder is None
    assert len(aware.intent) == vectors.shape[1] and aware.encoder == "enc"
    assert aware.intent[0] > 2.0 and max(abs(w) for w in aware.intent[1:]) < 1.0
    with_text = [aware.relevance(s, v) for s, v in zip(scores, vectors, strict=True)]
    assert auc(with_text, labels) > auc(scores, labels) + 0.15


def test_gate_file_round_trip_and_inverse_with_intent(tmp_path):
    gate = Gate(0.4, 12.0, 0.6, intent=(0.5, -1.0, 2.0), encoder="enc")
    loaded = Gate.load(gate.save(tmp_path / "gate.json"))
    assert loaded == gate
    turn = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    for score in (0.2, 0.41, 0.7):
        back = loaded.score_of(loaded.relevance(score, turn), turn)
        assert back == pytest.approx(score, abs=1e-6)
    assert loaded.relevance(0.4, turn) != loaded.relevance(0.4)  # no turn: content only
    with pytest.raises(ValueError, match="3-d"):
        loaded.relevance(0.4, np.zeros(4))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        Gate.load(tmp_path / "bad.json")


def test_read_decisions_names_the_line_and_field(tmp_path):
    path = tmp_path / "labels.jsonl"
    path.write_text(
        json.dumps({"score": 0.5, "label": True, "text": "any tent ideas?"}) + "\n\n"
        + json.dumps({"relevance": 0.7, "label": 0}) + "\n"
    )
    got = read_decisions_jsonl(path)
    assert got[0] == Decision(True, 0.5, None, "any tent ideas?", source=f"{path}:1")
    assert (got[1].label, got[1].relevance, got[1].text) == (False, 0.7, None)
    path.write_text(json.dumps({"score": "high", "label": True}) + "\n")
    with pytest.raises(ValueError, match=r"labels.jsonl:1: field 'score'"):
        read_decisions_jsonl(path)
    path.write_text(json.dumps({"score": 0.1}) + "\n")
    with pytest.raises(ValueError, match=r":1: field 'label'"):
        read_decisions_jsonl(path)


def _decisions(rng: np.random.Generator) -> list[Decision]:
    out = []
    for _ in range(3):
        out += [Decision(True, float(rng.uniform(0.35, 0.6)), text=t) for t in ASKING]
        out += [Decision(False, float(rng.uniform(0.3, 0.55)), text=t) for t in CLOSING]
    return out


def test_calibrated_gate_is_saved_and_used_by_suggest(world):
    chat = [{"role": "user", "content": "I'm planning a two-night hiking trip in the hills."},
            {"role": "assistant", "content": "Sounds lovely! How can I help?"}]
    ask = chat + [{"role": "user", "content": "Which tent would you suggest for two people?"}]
    bye = chat + [{"role": "user", "content": "Nothing really, thanks, bye!"}]
    before = world.suggest(ask, log=False).relevance, world.suggest(bye, log=False).relevance

    report = world.calibrate_gate(_decisions(np.random.default_rng(1)))
    assert report.intent and report.n_decisions == 48 and report.n_with_text == 48
    assert report.auc > report.auc_before
    assert world.gate_path.exists() and world.gate.intent
    assert world.gate.encoder == world.encoder.name

    asked, closed = world.suggest(ask, log=False), world.suggest(bye, log=False)
    assert asked.relevance - closed.relevance > before[0] - before[1] + 0.1
    assert asked.threshold == pytest.approx(world.gate.threshold)
    # A threshold set explicitly in the settings still wins over the file's.
    world.settings = world.settings.model_copy(update={"suggest": world.settings.suggest
                                                       .model_copy(update={"threshold": 0.99})})
    world.settings.suggest.model_fields_set.add("threshold")
    assert world.suggest(ask, log=False).threshold == 0.99


def test_a_gate_fitted_on_another_encoder_is_refused(world):
    from convrec.knowledge.encoder import EncoderMismatchError

    Gate(0.4, 12.0, 0.5, intent=tuple([0.0] * world.encoder.dim), encoder="other").save(
        world.gate_path)
    with pytest.raises(EncoderMismatchError, match="gate.json"):
        world.suggest("User: which tent for two people?", log=False)


def test_calibrate_from_logged_conversations(world):
    """Decisions come from the history: impressions, the user's turn before them, clicks."""
    rng = np.random.default_rng(2)
    open_gate = {"threshold": 0.0, "min_item_relevance": 0.0}  # log decisions at every score
    world.settings = world.settings.model_copy(
        update={"suggest": world.settings.suggest.model_copy(update=open_gate)})
    for i, text in enumerate((ASKING + CLOSING) * 2):
        conv, asking = f"c{i}", text in ASKING
        opening = "I'm getting ready for a camping weekend with a friend."
        world.log_message("u1", {"role": "user", "content": opening}, conversation_id=conv)
        world.log_message("u1", {"role": "user", "content": text}, conversation_id=conv)
        result = world.suggest([{"role": "user", "content": opening},
                                {"role": "user", "content": text}],
                               user_id="u1", conversation_id=conv)
        assert result.surfaced
        if asking or rng.random() < 0.1:
            world.log_event({"user_id": "u1", "item_id": result.suggestions[0].id,
                             "type": "click", "conversation_id": conv})
    report = world.calibrate_gate(save=False)
    assert report.n_decisions == 32 and report.n_with_text == 32 and report.intent
    assert report.path is None and not world.gate_path.exists()
    assert report.auc > 0.9


def test_an_intent_gate_never_prefers_worse_matches():
    """When the words explain everything and similarity points the wrong way, the slope on
    similarity is held at its floor instead of turning negative."""
    from convrec.pipeline.gate import MIN_INTENT_GATE_SCALE

    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(500, 4))
    labels = vectors[:, 0] > 0
    scores = np.where(labels, 0.4, 0.5) + rng.normal(0, 0.05, 500)  # better match, less wanted
    with pytest.raises(ValueError, match="cannot calibrate"):
        fit_gate(scores, labels)
    gate = fit_gate(scores, labels, turn_vectors=vectors)
    assert gate.scale == pytest.approx(MIN_INTENT_GATE_SCALE)
    assert gate.relevance(0.6, vectors[0]) > gate.relevance(0.5, vectors[0])
    assert auc([gate.relevance(s, v) for s, v in zip(scores, vectors, strict=True)],
               labels) > 0.9
