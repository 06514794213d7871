"""File-based training and evaluation (plugin/training.py) on tiny JSONL files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from convrec.events import EventFileError
from convrec.model import ModelConfig, TrainConfig, load_checkpoint
from convrec.training import (
    evaluate_from_files,
    parse_ts,
    read_events,
    train_from_files,
)

N_ITEMS = 10
T0 = 1_717_000_000


class HashEncoder:
    """Stand-in for ContentEncoder: a fixed random unit vector per text."""

    name = "hash-stand-in"
    dim = 16

    def _vec(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_items(self, items: Sequence[Any]) -> np.ndarray:
        return np.stack([self._vec(item.encoding_text()) for item in items])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts])


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def files(tmp_path: Path) -> tuple[Path, Path]:
    """Products p1..p10; 40 users walk p1 -> p2 -> ... -> p10 -> p1 (views and purchases, with a
    user turn now and then), so the next item is always determined."""
    items = [
        {"id": f"p{i}", "kind": "product", "title": f"Gadget number {i}"} for i in range(1, 11)
    ]
    items.append({"id": "a1", "kind": "article", "title": "Returns policy", "body": "How to."})
    rng = np.random.default_rng(0)
    events: list[dict[str, Any]] = []
    for u in range(40):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(6, 12))
        ts = T0 + u * 10_000
        for t in range(length):
            ts += int(rng.integers(1, 5000))
            if t == 2 and u % 3 == 0:
                events.append(
                    {"user": f"u{u}", "type": "user_turn", "text": "any gadgets?", "ts": ts}
                )
            kind = "purchase" if t % 4 == 3 else "view"
            event = {"user": f"u{u}", "item": f"p{(start + t) % N_ITEMS + 1}", "type": kind}
            event["ts"] = ts if u % 2 else f"{np.datetime64(ts, 's')}Z"
            events.append(event)
    rng.shuffle(events)  # the file need not be in time order
    return _write_jsonl(tmp_path / "items.jsonl", items), _write_jsonl(
        tmp_path / "events.jsonl", events
    )


def _tiny() -> tuple[ModelConfig, TrainConfig]:
    mc = ModelConfig(n_items=0, d_model=16, n_layers=1, max_len=16, dropout=0.0)
    return mc, TrainConfig(epochs=30, batch_size=16, lr=1e-2, patience=30, progress=False)


def test_train_then_evaluate_from_files(tmp_path, files):
    items, events = files
    mc, tc = _tiny()
    report = train_from_files(
        items, events, tmp_path / "model", model_config=mc, train_config=tc, encoder=HashEncoder()
    )
    assert report.n_users == 40 and report.n_items == 11
    assert report.valid["ndcg@10"] > 0.8
    loaded = load_checkpoint(tmp_path / "model")
    assert loaded.encoder == "hash-stand-in" and loaded.content_dim == 16
    assert set(loaded.item_ids) <= {f"p{i}" for i in range(1, 11)}
    assert loaded.metadata["use_all"] is False

    scores = evaluate_from_files(items, events, tmp_path / "model", k=1, encoder=HashEncoder())
    assert set(scores) == {"hr@1", "ndcg@1", "mrr@1", "n_users"}
    assert scores["n_users"] == 40
    assert scores["hr@1"] >= 0.9


def test_use_all_trains_on_every_event(tmp_path, files):
    items, events = files
    mc, tc = _tiny()
    tc.epochs = 2
    report = train_from_files(
        items,
        events,
        tmp_path / "m",
        model_config=mc,
        train_config=tc,
        encoder=HashEncoder(),
        use_all=True,
    )
    assert report.valid == {} and report.epochs_run == 2
    assert sorted(load_checkpoint(tmp_path / "m").item_ids) == sorted(f"p{i}" for i in range(1, 11))


def test_ids_only_model_needs_no_encoder(tmp_path, files):
    items, events = files
    mc, tc = _tiny()
    mc.use_content = False
    tc.epochs = 2
    train_from_files(items, events, tmp_path / "m", model_config=mc, train_config=tc)
    loaded = load_checkpoint(tmp_path / "m")
    assert loaded.encoder is None
    assert "hr@10" in evaluate_from_files(items, events, tmp_path / "m")


def test_event_file_errors_name_line_and_field(tmp_path):
    path = _write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"user": "u1", "item": "p1", "type": "view", "ts": T0},
            {"user": "u1", "item": "nope", "type": "view", "ts": T0},
            {"user": "u1", "item": "p1", "type": "teleport", "ts": T0},
            {"user": "u1", "item": "p1", "type": "view", "ts": "yesterday"},
            {"item": "p1", "type": "view", "ts": T0},
            {"user": "u1", "type": "user_turn", "ts": T0},
        ],
    )
    with path.open("a") as f:
        f.write("{not json\n")
    with pytest.raises(EventFileError) as err:
        read_events(path, ["p1"])
    text = str(err.value)
    for line, fld in [(2, "item"), (3, "type"), (4, "ts"), (5, "user"), (6, "text")]:
        assert f"events.jsonl:{line}: field '{fld}'" in text
    assert "events.jsonl:7: malformed JSON" in text
    assert "nope" in text
    assert [e.line for e in err.value.errors] == [2, 3, 4, 5, 6, 7]


def test_train_from_files_reports_a_bad_events_file(tmp_path, files):
    items, _ = files
    bad = _write_jsonl(
        tmp_path / "bad.jsonl", [{"user": "u", "item": "zz", "type": "view", "ts": 1}]
    )
    with pytest.raises(EventFileError, match=r"bad.jsonl:1: field 'item'"):
        train_from_files(items, bad, tmp_path / "m", encoder=HashEncoder())


def test_timestamps_unix_or_iso():
    assert parse_ts(T0) == T0
    assert parse_ts("2024-05-29T16:26:40Z") == T0
    assert parse_ts("2024-05-29T18:26:40+02:00") == T0
    assert parse_ts("2024-05-29T16:26:40") == T0  # naive = UTC
    for bad in ("soon", None, True, float("nan"), [1]):
        with pytest.raises(ValueError):
            parse_ts(bad)


def test_with_the_real_minilm_encoder(tmp_path, files, minilm):
    """The default encoder path end to end (MiniLM is loaded once per session by conftest)."""
    from convrec.knowledge.cache import EmbeddingCache

    encoder = minilm.with_cache(EmbeddingCache())
    items, events = files
    mc, tc = _tiny()
    tc.epochs = 3
    train_from_files(
        items, events, tmp_path / "m", model_config=mc, train_config=tc, encoder=encoder
    )
    loaded = load_checkpoint(tmp_path / "m")
    assert loaded.content_dim == 384 and loaded.encoder == encoder.name
    assert loaded.metadata["encoder_identity"]["dim"] == 384
    scores = evaluate_from_files(items, events, tmp_path / "m", encoder=encoder)
    assert scores["n_users"] == 40


def test_events_files_for_training_and_for_history_share_one_reader(tmp_path):
    """Turns are training data; a history import says where they belong instead."""
    from convrec.events import load_events

    rows = [{"user": "u1", "type": "user_turn", "text": "a fast kettle?", "ts": T0},
            {"user": "u1", "item": "p1", "type": "view", "ts": T0 + 5}]
    path = _write_jsonl(tmp_path / "events.jsonl", rows)
    got = read_events(path, ["p1"])
    assert [(e.type, e.item, e.text, e.line) for e in got] == [
        ("user_turn", None, "a fast kettle?", 1), ("view", "p1", None, 2)]
    with pytest.raises(EventFileError, match=r"events.jsonl:1: field 'type': .*turn"):
        load_events(path, known_item_ids={"p1"})
    csv_path = tmp_path / "events.csv"
    csv_path.write_text(f"user,item,type,ts,text\nu1,,assistant_turn,{T0},hello\nu1,p1,click,{T0}"
                        ",\n")
    assert [(e.type, e.line) for e in read_events(csv_path, ["p1"])] == [
        ("assistant_turn", 2), ("click", 3)]
