"""Adapting the encoder to a knowledge base: it learns, it saves a loadable model, it never
overwrites a folder, and the CLI runs it on a workspace's items."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convrec.knowledge.adapt import PROVENANCE, AdaptConfig, adapt_encoder, text_pairs
from convrec.knowledge.encoder import ContentEncoder
from convrec.knowledge.items import Article, Product

ARTICLES = [
    Article(id="spread", title="How does the virus spread?",
            body="Mainly through respiratory droplets when an infected person coughs or sneezes."),
    Article(id="masks", title="Should I wear a mask?",
            body="Wear a mask in crowded indoor places and on public transport."),
    Article(id="pets", title="Can my pet catch it?",
            body="A few animals have tested positive; there is no sign they pass it to people."),
    Article(id="tests", title="Where can I get tested?",
            body="Call your doctor or a testing centre before going there in person."),
]
TINY = AdaptConfig(epochs=3, lr=5e-5, batch_size=4)


def _margin(encoder: ContentEncoder) -> float:
    """Mean cosine of each title to its own body minus the mean to the other bodies."""
    titles, bodies = zip(*text_pairs(ARTICLES), strict=True)
    sims = encoder.encode_queries(list(titles)) @ encoder.encode_queries(list(bodies)).T
    own = np.diag(sims).mean()
    return float(own - (sims.sum() - np.trace(sims)) / (sims.size - len(sims)))


def test_text_pairs_take_each_items_own_text() -> None:
    kettle = Product(id="kettle", title="Blue kettle", description="Stovetop, wooden handle.")
    bare = Product(id="bare", title="Mystery box")
    pairs = text_pairs([kettle, bare, ARTICLES[0]])
    assert pairs == [("Blue kettle", "Stovetop, wooden handle."),  # sorted by id
                     (ARTICLES[0].title_text(), ARTICLES[0].body_text())]


def test_adapting_pulls_each_title_to_its_own_text(tmp_path, minilm) -> None:
    before = _margin(minilm)
    report = adapt_encoder(ARTICLES, tmp_path / "kb", encoder=minilm, config=TINY)
    assert report.n_pairs == 4 and len(report.losses) == 3 and not report.reused
    assert report.losses[-1] < report.losses[0]
    adapted = ContentEncoder(report.out_dir)
    assert adapted.name == str(tmp_path / "kb") and adapted.dim == minilm.dim
    assert _margin(adapted) > before + 0.02
    assert _margin(minilm) == pytest.approx(before)  # the live encoder is untouched
    saved = json.loads((report.out_dir / PROVENANCE).read_text())
    assert saved["config"]["epochs"] == 3 and saved["report"]["base"] == minilm.name


def test_the_default_folder_is_named_by_the_adaptation_and_reused(tmp_path, minilm) -> None:
    config = AdaptConfig(epochs=1, batch_size=4)
    first = adapt_encoder(ARTICLES, encoder=minilm, config=config, root=tmp_path)
    assert first.out_dir.parent == tmp_path / "encoders" and first.out_dir.name.startswith("kb-")
    again = adapt_encoder(ARTICLES, encoder=minilm, config=config, root=tmp_path)
    assert again.reused and again.out_dir == first.out_dir and again.losses == first.losses
    other = adapt_encoder(ARTICLES[:3], encoder=minilm, config=config, root=tmp_path)
    assert other.out_dir != first.out_dir and not other.reused


def test_refuses_a_used_folder_and_too_little_text(tmp_path, minilm) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "model.safetensors").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not empty"):
        adapt_encoder(ARTICLES, used, encoder=minilm, config=TINY)
    with pytest.raises(ValueError, match="at least 2 items"):
        adapt_encoder([ARTICLES[0], Product(id="p", title="No text")], tmp_path / "new",
                      encoder=minilm)
    with pytest.raises(ValueError, match="invalid AdaptConfig"):
        AdaptConfig(batch_size=1)


def test_cli_adapts_the_workspace_items(tmp_path, capsys, monkeypatch) -> None:
    from convrec.cli import main
    from tests.conftest import write

    monkeypatch.setenv("CONVREC_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    items = write(tmp_path / "kb.jsonl",
                  "\n".join(a.model_dump_json(include={"id", "kind", "title", "body"})
                            for a in ARTICLES))
    assert main(["ingest", str(items)]) == 0
    capsys.readouterr()
    assert main(["adapt-encoder", "--out", str(tmp_path / "enc"), "--epochs", "1"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_pairs"] == 4
    assert f"CONVREC_ENCODER_MODEL={tmp_path / 'enc'}" in captured.err
    # ingest again with the adapted encoder: every item is encoded anew
    monkeypatch.setenv("CONVREC_ENCODER_MODEL", str(tmp_path / "enc"))
    monkeypatch.setenv("CONVREC_WORKSPACE", str(tmp_path / "ws2"))
    assert main(["ingest", str(items)]) == 0
    assert "4 added" in capsys.readouterr().out
    assert main(["adapt-encoder", "--out", str(tmp_path / "enc")]) == 2
    assert "is not empty" in capsys.readouterr().err


def _logged_workspace(tmp_path, minilm, **settings):
    """A Recommender on ARTICLES whose history holds a suggestion clicked after a message the
    host logged, one dismissed, and one clicked where only the suggest call saw the message."""
    from convrec.knowledge.cache import EmbeddingCache
    from convrec.recommender import Recommender
    from convrec.settings import Settings, SuggestSettings
    from convrec.types import Event

    rec = Recommender(Settings(workspace=tmp_path / "ws", **settings,
                               suggest=SuggestSettings(threshold=0.0, min_item_relevance=0.0)),
                      encoder=minilm.with_cache(EmbeddingCache()))
    rec.ingest(ARTICLES)
    chats = {"c1": ("could my dog bring the illness home?", "pets", "click"),
             "c2": ("do I need to cover my face on the bus?", "masks", "dismiss"),
             "c3": (None, "tests", "click")}
    for conv, (said, item, reaction) in chats.items():
        if said:
            rec.log_message("u", {"role": "user", "content": said}, conversation_id=conv)
        result = rec.suggest(said or "where do I get a test?", user_id="u",
                             conversation_id=conv, k=1)
        assert [s.id for s in result.suggestions] == [item]
        rec.log_event(Event(user_id="u", item_id=item, type=reaction, conversation_id=conv))
    return rec


def test_logged_clicks_pair_what_was_said_with_the_item_taken_up(tmp_path, minilm) -> None:
    from convrec.pipeline.feedback import logged_clicks

    rec = _logged_workspace(tmp_path, minilm)
    try:
        assert logged_clicks(rec.history_store) == [
            ("could my dog bring the illness home?", "pets"),  # the host logged it
            ("where do I get a test?", "tests")]  # the suggest call logged it
        assert logged_clicks(rec.history_store, tenant="other") == []
        said = [m.content for m in rec.history_store.conversation_messages("c1")]
        assert said == ["could my dog bring the illness home?"]  # not logged twice
    finally:
        rec.close()
    quiet = _logged_workspace(tmp_path / "quiet", minilm, log_user_turns=False)
    try:  # only what the host logged
        assert [i for _, i in logged_clicks(quiet.history_store)] == ["pets"]
    finally:
        quiet.close()


def test_adapting_learns_the_wording_of_logged_clicks(tmp_path, minilm) -> None:
    rec = _logged_workspace(tmp_path, minilm)
    clicked = {"could my dog bring the illness home?": 2, "where do I get a test?": 3}

    def pull(encoder: ContentEncoder) -> float:  # each clicked title against the others
        sims = encoder.encode_queries(list(clicked)) @ encoder.encode_queries(
            [a.title for a in ARTICLES]).T
        return float(np.mean([row[i] - np.delete(row, i).mean()
                              for row, i in zip(sims, clicked.values(), strict=True)]))

    try:
        plain = rec.adapt_encoder(tmp_path / "plain", config=TINY, logs=False)
        learned = rec.adapt_encoder(tmp_path / "learned", config=TINY)
    finally:
        rec.close()
    assert (plain.n_pairs, plain.n_query_pairs) == (4, 0)
    assert (learned.n_pairs, learned.n_query_pairs) == (8, 4)  # each with title and body
    assert pull(ContentEncoder(learned.out_dir)) > pull(ContentEncoder(plain.out_dir)) + 0.02


def test_cli_adapts_on_the_workspace_clicks_unless_told_not_to(tmp_path, capsys, monkeypatch,
                                                               minilm) -> None:
    from convrec.cli import main

    rec = _logged_workspace(tmp_path, minilm)  # its history: two clicks after user turns
    rec.close()
    monkeypatch.setenv("CONVREC_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    capsys.readouterr()
    assert main(["adapt-encoder", "--out", str(tmp_path / "with"), "--epochs", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["n_query_pairs"] == 4
    assert main(["adapt-encoder", "--out", str(tmp_path / "without"), "--epochs", "1",
                 "--no-logs"]) == 0
    assert json.loads(capsys.readouterr().out)["n_query_pairs"] == 0
