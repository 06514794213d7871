"""File-based workflows around the sequential model: train from, and evaluate on, files.

Items file: what ``convrec.knowledge.loaders.load_items`` reads (JSONL of items with ``id``,
``kind``, ``title``, ...). Events file: what ``convrec.events`` reads (JSONL or CSV; the same
reader as history imports, with turns allowed), e.g. one JSON object per line::

    {"user": "u1", "item": "sku-1", "type": "view", "ts": 1717000000, "value": 4.0}
    {"user": "u1", "type": "user_turn", "text": "a fast kettle?", "ts": "2024-05-29T16:26:40Z"}

``type`` is an item event (view, click, add_to_cart, purchase, read, rate, dismiss, search) or a
conversation turn (user_turn, assistant_turn, which carry ``text`` and no ``item``); ``search``
may carry ``text`` instead of an item. ``ts`` is Unix seconds or ISO 8601 (naive = UTC).

Split: each user's last target item event is the test, the one before it the validation
(early stopping); training sees neither, unless ``use_all=True`` (production).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from convrec.events import load_events, parse_timestamp
from convrec.model.checkpoint import load_checkpoint, save_checkpoint
from convrec.model.config import EVENT_TYPE_INDEX, ModelConfig, TrainConfig
from convrec.model.data import FeatureTables, UserSequence, leave_one_out
from convrec.model.evaluate import evaluate
from convrec.model.network import time_gap_buckets


class ItemLike(Protocol):
    id: str

    def encoding_text(self) -> str: ...


class Encoder(Protocol):
    """What training needs of ``convrec.knowledge.encoder.ContentEncoder``."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode_items(self, items: Sequence[Any]) -> np.ndarray: ...

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass
class FileEvent:
    user: str
    type: str
    ts: float
    line: int
    item: str | None = None
    text: str | None = None
    value: float | None = None


@dataclass
class TrainReport:
    out_dir: Path
    n_users: int
    n_items: int  # catalogue size
    n_id_items: int  # items with an id embedding (seen in training)
    n_events: int
    best_epoch: int
    epochs_run: int
    seconds: float
    valid: dict[str, float] = field(default_factory=dict)  # empty with use_all
    history: list[dict[str, float]] = field(default_factory=list)


# --- reading -------------------------------------------------------------------------------------
def parse_ts(value: Any) -> float:
    """Unix seconds or an ISO 8601 time -> Unix seconds (naive times are UTC): the same rule
    as history imports (``convrec.events.parse_timestamp``)."""
    return parse_timestamp(value).timestamp()


def read_events(path: str | Path, known_items: Iterable[str]) -> list[FileEvent]:
    """Every row of an events file (JSONL or CSV), item events and turns, in file order.

    The file is read by ``convrec.events`` (the reader history imports use, with turns allowed):
    raises ``EventFileError`` naming each bad line and field, including unknown item ids.
    """
    result = load_events(path, known_item_ids=set(known_items), turns=True)
    rows = [
        FileEvent(user=e.user_id, type=e.type, ts=e.ts.timestamp(), line=line,
                  item=e.item_id, text=e.text, value=e.value)
        for e, line in zip(result.events, result.lines, strict=True)
    ]
    rows += [
        FileEvent(user=t.user_id, type=f"{t.role}_turn", ts=t.ts.timestamp(), line=line,
                  text=t.text)
        for t, line in zip(result.turns, result.turn_lines, strict=True)
    ]
    return sorted(rows, key=lambda e: e.line)


# --- sequences -----------------------------------------------------------------------------------
@dataclass
class _Corpus:
    sequences: list[UserSequence]
    content: np.ndarray  # [R, C]: row 0 zero, 1..N items, then event texts
    item_ids: list[str]


def _build_corpus(
    items: Sequence[ItemLike], events: list[FileEvent], encoder: Encoder | None
) -> _Corpus:
    """Per-user sequences in time order (ties in file order) and the content table."""
    item_ids = [item.id for item in items]
    catalogue = {item_id: i + 1 for i, item_id in enumerate(item_ids)}
    texts = [e.text for e in events if e.item is None and e.text]
    if encoder is None:
        dim = 1
        content = np.zeros((1 + len(items) + len(texts), dim), dtype=np.float32)
    else:
        item_vecs = np.asarray(encoder.encode_items(list(items)), dtype=np.float32)
        dim = item_vecs.shape[1] if item_vecs.ndim == 2 else encoder.dim
        text_vecs = (
            np.asarray(encoder.encode_queries(texts), dtype=np.float32)
            if texts
            else np.zeros((0, dim), np.float32)
        )
        content = np.vstack([np.zeros((1, dim), np.float32), item_vecs.reshape(-1, dim), text_vecs])
    by_user: dict[str, list[FileEvent]] = {}
    for event in events:
        by_user.setdefault(event.user, []).append(event)
    sequences = []
    text_row = 1 + len(items)
    text_rows: dict[int, int] = {}
    for event in events:  # rows in file order, as encoded above
        if event.item is None and event.text:
            text_rows[event.line] = text_row
            text_row += 1
    for user, user_events in by_user.items():
        user_events.sort(key=lambda e: (e.ts, e.line))
        item = np.array([catalogue[e.item] if e.item else 0 for e in user_events], dtype=np.int64)
        rows = np.array([text_rows.get(e.line, 0) for e in user_events], dtype=np.int64)
        sequences.append(
            UserSequence(
                user=user,
                content_row=np.where(item > 0, item, rows),
                item=item,
                event_type=np.array([EVENT_TYPE_INDEX[e.type] for e in user_events]),
                time_bucket=time_gap_buckets([e.ts for e in user_events]),
            )
        )
    return _Corpus(sequences, content, item_ids)


def _default_encoder() -> Encoder:
    from convrec.knowledge.encoder import ContentEncoder

    return ContentEncoder()


def _load_items(path: str | Path) -> list[Any]:
    from convrec.knowledge.loaders import load_items

    return list(load_items(path).items)


# --- workflows -----------------------------------------------------------------------------------
def train_from_files(
    items_path: str | Path,
    events_path: str | Path,
    out_dir: str | Path,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    encoder: Encoder | None = None,
    use_all: bool = False,
) -> TrainReport:
    """Train the sequential model on an items file and an events file; write a checkpoint.

    By default each user's last item event is held out (the test) and the one before it
    drives early stopping; ``use_all=True`` trains on everything for ``train_config.epochs``.
    Items that never occur in training get no id embedding and are scored from content.
    """
    started = time.perf_counter()
    items = _load_items(items_path)
    events = read_events(events_path, (item.id for item in items))
    uses_content = model_config is None or model_config.use_content
    if uses_content and encoder is None:
        encoder = _default_encoder()
    corpus = _build_corpus(items, events, encoder if uses_content else None)

    if use_all:
        train_seqs, valid = corpus.sequences, None
    else:
        split = leave_one_out(corpus.sequences)
        train_seqs, valid = split.train, split.valid
    seen = np.unique(np.concatenate([s.item for s in train_seqs] or [np.zeros(0, np.int64)]))
    seen = seen[seen > 0]
    id_index = np.zeros(len(corpus.item_ids) + 1, dtype=np.int64)
    id_index[seen] = np.arange(1, len(seen) + 1)
    vocab = [corpus.item_ids[i - 1] for i in seen]

    mc = replace(
        model_config or ModelConfig(n_items=0),
        n_items=len(vocab) + 1,
        content_dim=corpus.content.shape[1],
    )
    tc = train_config or TrainConfig()
    tables = FeatureTables(torch.from_numpy(corpus.content), torch.from_numpy(id_index))
    from convrec.model.train import train  # training code only where training happens

    result = train(mc, tc, tables, train_seqs, valid)
    enc_name = encoder.name if (encoder is not None and uses_content) else None
    metadata: dict[str, Any] = {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "use_all": use_all,
        "train_config": tc.to_dict(),
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "valid": result.best_valid,
        "n_users": len(corpus.sequences),
        "n_events": len(events),
        "event_types": sorted({e.type for e in events}),  # serving feeds only these token types
        "items_path": str(items_path),
        "events_path": str(events_path),
    }
    identity = getattr(encoder, "identity", None)
    if uses_content and callable(identity):
        metadata["encoder_identity"] = identity().to_dict()
    save_checkpoint(out_dir, result.model, vocab, encoder=enc_name, metadata=metadata)
    return TrainReport(
        out_dir=Path(out_dir),
        n_users=len(corpus.sequences),
        n_items=len(corpus.item_ids),
        n_id_items=len(vocab),
        n_events=len(events),
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        seconds=time.perf_counter() - started,
        valid=result.best_valid,
        history=result.history,
    )


def evaluate_from_files(
    items_path: str | Path,
    events_path: str | Path,
    model_dir: str | Path,
    *,
    k: int = 10,
    encoder: Encoder | None = None,
) -> dict[str, float]:
    """Score each user's last item event given everything before it (full ranking over the
    items file, history filtered). Returns ``hr@k``, ``ndcg@k``, ``mrr@k`` and ``n_users``."""
    loaded = load_checkpoint(model_dir)
    items = _load_items(items_path)
    events = read_events(events_path, (item.id for item in items))
    if loaded.config.use_content and encoder is None:
        from convrec.knowledge.encoder import DEFAULT_MODEL_NAME, ContentEncoder

        name = loaded.encoder
        encoder = ContentEncoder() if name in (None, DEFAULT_MODEL_NAME) else ContentEncoder(name)
    if loaded.config.use_content and encoder is not None:
        check = getattr(encoder, "check_compatible", None)
        recorded = loaded.metadata.get("encoder_identity") or loaded.encoder
        if callable(check) and recorded:
            check(recorded)
    corpus = _build_corpus(items, events, encoder if loaded.config.use_content else None)
    if loaded.config.use_content and corpus.content.shape[1] != loaded.content_dim:
        raise ValueError(
            f"the encoder gives {corpus.content.shape[1]}-d vectors; the model expects "
            f"{loaded.content_dim}-d ({loaded.encoder})"
        )
    rows = loaded.id_rows(corpus.item_ids)
    id_index = torch.tensor([0, *rows], dtype=torch.int64)
    tables = FeatureTables(torch.from_numpy(corpus.content), id_index)
    test = leave_one_out(corpus.sequences).test
    if not test:
        raise ValueError(f"{events_path}: no user has an item event after an earlier event")
    scores = evaluate(loaded.model, tables, test, ks=(k,))
    return {**scores, "n_users": len(test)}
