"""suggest() with a trained sequence model: history changes the ranking, new items are scored
from content, and a checkpoint from another encoder is refused."""

from __future__ import annotations

import json
import random

import pytest

from convrec.knowledge.encoder import EncoderMismatchError
from convrec.model import ModelConfig, TrainConfig
from convrec.recommender import Recommender
from convrec.training import train_from_files
from convrec.types import Event
from tests.conftest import write

COLOURS = ["red", "blue", "green", "yellow"]
BAGS = [{"id": f"bag-{c}", "kind": "product", "title": f"{c.title()} sleeping bag",
         "description": "A warm sleeping bag."} for c in COLOURS]
TENTS = [{"id": f"tent-{c}", "kind": "product", "title": f"Ridge two-person tent ({c})",
          "description": "A light two-person backpacking tent."} for c in COLOURS]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, minilm):
    """Users who view the <colour> sleeping bag buy the <colour> tent next."""
    root = tmp_path_factory.mktemp("personal")
    items = write(root / "items.jsonl", "\n".join(json.dumps(i) for i in BAGS + TENTS))
    rng = random.Random(0)
    lines = []
    for u in range(80):
        c = rng.choice(COLOURS)
        lines.append({"user": f"u{u}", "item": f"bag-{c}", "type": "view", "ts": 1000 + u})
        lines.append({"user": f"u{u}", "item": f"tent-{c}", "type": "purchase",
                      "ts": 1060 + u})
    events = write(root / "events.jsonl", "\n".join(json.dumps(e) for e in lines))
    train_from_files(items, events, root / "ws" / "model", encoder=minilm, use_all=True,
                     model_config=ModelConfig(n_items=0, d_model=32, n_layers=1, max_len=8,
                                              dropout=0.0),
                     train_config=TrainConfig(epochs=40, batch_size=32, lr=5e-3,
                                              progress=False, seed=1))
    return root, items


@pytest.fixture()
def rec(trained, tmp_path, minilm):
    import shutil

    from convrec.knowledge.cache import EmbeddingCache

    root, items = trained
    ws = tmp_path / "ws"
    shutil.copytree(root / "ws", ws)
    r = Recommender(workspace=ws, encoder=minilm.with_cache(EmbeddingCache()))
    r.ingest(items)
    yield r
    r.close()


ASK = "User: we need a two-person tent for a backpacking trip"


@pytest.mark.parametrize("colour", COLOURS)
def test_history_moves_the_matching_tent_to_the_top(rec, colour):
    assert rec.personalizer is not None
    rec.log_event(Event(user_id="shopper", item_id=f"bag-{colour}", type="view"))
    top = rec.suggest(ASK, user_id="shopper", kinds=["product"], k=4).suggestions
    assert top[0].id == f"tent-{colour}", [s.id for s in top]


def test_without_the_model_content_alone_decides(rec):
    rec.settings.suggest.model_weight = 0.0
    firsts = set()
    for colour in COLOURS:
        rec.log_event(Event(user_id=f"s-{colour}", item_id=f"bag-{colour}", type="view"))
        firsts.add(rec.suggest(ASK, user_id=f"s-{colour}", kinds=["product"]).suggestions[0].id)
    assert len(firsts) == 1  # the same tent whatever the history


def test_an_item_added_after_training_is_scored_from_content(rec):
    from convrec.knowledge.items import Product

    rec.ingest([Product(id="tent-orange", title="Ridge two-person tent (orange)",
                        description="A light two-person backpacking tent.")])
    assert "tent-orange" not in rec.personalizer.loaded.item_ids
    ids = [s.id for s in rec.suggest(ASK, kinds=["product"], k=5).suggestions]
    assert "tent-orange" in ids


def test_a_checkpoint_from_another_encoder_is_refused(rec):
    meta_path = rec.settings.resolved_model_dir / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["encoder"] = "someone/else-encoder"
    meta["metadata"].pop("encoder_identity", None)
    meta_path.write_text(json.dumps(meta))
    rec.reload_model()
    with pytest.raises(EncoderMismatchError, match="else-encoder"):
        rec.suggest(ASK, user_id="x")


def test_train_on_the_workspace_history(tmp_path, minilm):
    """History logged through the facade trains the model that the next suggest uses."""
    from convrec.knowledge.cache import EmbeddingCache
    from convrec.knowledge.items import parse_item
    from convrec.types import Message

    rec = Recommender(workspace=tmp_path / "ws", encoder=minilm.with_cache(EmbeddingCache()))
    rec.ingest([parse_item(i) for i in BAGS + TENTS])
    rng = random.Random(3)
    from datetime import UTC, datetime, timedelta

    start = datetime(2026, 1, 1, tzinfo=UTC)
    for u in range(60):
        c = rng.choice(COLOURS)
        t = start + timedelta(hours=u)
        rec.log_message(f"u{u}", Message(role="user", content="hello", ts=t))
        rec.log_event(Event(user_id=f"u{u}", item_id=f"bag-{c}", type="view",
                            ts=t + timedelta(minutes=1)))
        rec.log_event(Event(user_id=f"u{u}", item_id=f"tent-{c}", type="purchase",
                            ts=t + timedelta(minutes=2)))
    items, events = rec.export_training_files(tmp_path / "export")
    assert len(events.read_text().splitlines()) == 180
    report = rec.train(model_config=ModelConfig(n_items=0, d_model=32, n_layers=1, max_len=8,
                                                dropout=0.0),
                       train_config=TrainConfig(epochs=40, batch_size=32, lr=5e-3,
                                                progress=False, seed=1))
    assert report.n_users == 60 and rec.personalizer is not None
    assert rec.personalizer.reads_turns
    rec.log_event(Event(user_id="shopper", item_id="bag-green", type="view"))
    top = rec.suggest(ASK, user_id="shopper", kinds=["product"], k=4).suggestions
    assert top[0].id == "tent-green", [s.id for s in top]
    rec.close()
