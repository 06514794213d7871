"""Event sequences, the leave-one-out split, and padded batches.

A ``UserSequence`` holds one user's events; ``FeatureTables`` the lookups they index: a content
table (row 0 is the zero vector, rows 1..N the catalogue's item vectors, so catalogue index i
is row i, and later rows hold the vectors of conversation turns and searches) and ``id_index``,
the id-embedding row of each catalogue index (0 when the item has no id embedding, e.g. it was
never seen in training).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from convrec.model.config import EVENT_TYPE_INDEX, NON_TARGET_TYPES

_NON_TARGET = np.array(sorted(EVENT_TYPE_INDEX[t] for t in NON_TARGET_TYPES), dtype=np.int64)


@dataclass
class UserSequence:
    """One user's events in time order (all arrays [T], int64)."""

    user: str
    content_row: np.ndarray
    item: np.ndarray
    event_type: np.ndarray
    time_bucket: np.ndarray

    def __len__(self) -> int:
        return len(self.item)

    def prefix(self, end: int) -> UserSequence:
        return UserSequence(
            self.user,
            self.content_row[:end],
            self.item[:end],
            self.event_type[:end],
            self.time_bucket[:end],
        )

    def target_positions(self) -> np.ndarray:
        """Indices of events that are targets: positive events on a catalogue item."""
        return np.flatnonzero((self.item > 0) & ~np.isin(self.event_type, _NON_TARGET))

    def next_targets(self) -> np.ndarray:
        """[T] catalogue index of the next target event strictly after each position (0: none)."""
        pos = self.target_positions()
        if len(pos) == 0:
            return np.zeros(len(self), dtype=np.int64)
        nxt = np.searchsorted(pos, np.arange(len(self)), side="right")
        items = self.item[pos[np.minimum(nxt, len(pos) - 1)]]
        return np.where(nxt < len(pos), items, 0).astype(np.int64)


@dataclass
class Example:
    """An input history and the catalogue index of the item that came next."""

    history: UserSequence
    target: int


@dataclass
class Split:
    train: list[UserSequence]
    valid: list[Example]
    test: list[Example]


def leave_one_out(sequences: Sequence[UserSequence]) -> Split:
    """Per user: last target event = test, second-to-last = validation; training sees neither.

    Test histories include the validation event; users with one target event only give a test
    example, and histories must be non-empty to be evaluated.
    """
    train: list[UserSequence] = []
    valid: list[Example] = []
    test: list[Example] = []
    for seq in sequences:
        pos = seq.target_positions()
        if len(pos) == 0:
            continue
        if pos[-1] > 0:
            test.append(Example(seq.prefix(int(pos[-1])), int(seq.item[pos[-1]])))
        if len(pos) >= 2:
            if pos[-2] > 0:
                valid.append(Example(seq.prefix(int(pos[-2])), int(seq.item[pos[-2]])))
            train.append(seq.prefix(int(pos[-2])))
    return Split(train, valid, test)


@dataclass
class Batch:
    """Left-padded tensors [B, L]. ``target`` is a catalogue index (0 = no target here);
    ``seen`` lists (row, catalogue index) pairs of items in each history, for filtering."""

    content_row: Tensor
    item: Tensor
    event_type: Tensor
    time_bucket: Tensor
    mask: Tensor
    target: Tensor
    seen: Tensor | None = None


def _pad(rows: list[np.ndarray], length: int) -> Tensor:
    out = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row):
            out[i, length - len(row) :] = row
    return torch.from_numpy(out)


def _collate(seqs: list[UserSequence], targets: list[np.ndarray], max_len: int) -> Batch:
    seqs = [s if len(s) <= max_len else _tail(s, max_len) for s in seqs]
    targets = [t[-max_len:] for t in targets]
    length = max(1, max(len(s) for s in seqs))
    return Batch(
        content_row=_pad([s.content_row for s in seqs], length),
        item=_pad([s.item for s in seqs], length),
        event_type=_pad([s.event_type for s in seqs], length),
        time_bucket=_pad([s.time_bucket for s in seqs], length),
        mask=_pad([np.ones(len(s), dtype=np.int64) for s in seqs], length).bool(),
        target=_pad(targets, length),
    )


def _tail(seq: UserSequence, n: int) -> UserSequence:
    return UserSequence(
        seq.user, seq.content_row[-n:], seq.item[-n:], seq.event_type[-n:], seq.time_bucket[-n:]
    )


def training_batches(
    sequences: Sequence[UserSequence],
    batch_size: int,
    max_len: int,
    rng: np.random.Generator,
    random_windows: bool = False,
) -> Iterator[Batch]:
    """Shuffled batches of similar-length sequences; each position learns the next target event.

    Each sequence is cut right before its last target, so its last input token has a target,
    and the newest ``max_len`` tokens are kept (as in SASRec). With ``random_windows`` a
    sequence longer than ``max_len`` is instead cut at a random point (so each epoch sees a
    different ``max_len`` window), which lets long histories teach more than their newest part.
    """
    usable = []
    for seq in sequences:
        pos = seq.target_positions()
        if len(pos) and pos[-1] > 0:
            usable.append(seq)
    # Batches of similar lengths (less padding), in random order; ties broken at random.
    lengths = np.array([min(len(s), max_len) for s in usable])
    order = np.lexsort((rng.random(len(usable)), lengths))
    starts = rng.permutation(np.arange(0, len(order), batch_size))
    for start in starts:
        chunk = [usable[i] for i in order[start : start + batch_size]]
        inputs, targets = [], []
        for seq in chunk:
            end = int(seq.target_positions()[-1])
            if random_windows and end > max_len:
                end = int(rng.integers(max_len, end + 1))
            inputs.append(seq.prefix(end))
            targets.append(seq.next_targets()[:end])
        yield _collate(inputs, targets, max_len)


def example_batches(examples: Sequence[Example], batch_size: int, max_len: int) -> Iterator[Batch]:
    """Evaluation batches in order: ``target`` holds the answer at the last position only."""
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        targets = []
        for ex in chunk:
            t = np.zeros(len(ex.history), dtype=np.int64)
            t[-1] = ex.target
            targets.append(t)
        batch = _collate([ex.history for ex in chunk], targets, max_len)
        seen = [
            (row, int(item))
            for row, ex in enumerate(chunk)
            for item in np.unique(ex.history.item)
            if item > 0
        ]
        batch.seen = torch.tensor(seen, dtype=torch.int64).reshape(-1, 2)
        yield batch


@dataclass
class FeatureTables:
    """A dataset's lookup tables as tensors, and how a batch becomes model inputs."""

    content: Tensor  # [R, C]
    id_index: Tensor  # [N + 1]

    @property
    def n_items(self) -> int:
        return len(self.id_index) - 1

    def inputs(self, batch: Batch, use_content: bool) -> tuple[Tensor | None, ...]:
        """(content, item_idx, event_type, time_bucket, mask) for the model."""
        content = self.content[batch.content_row] if use_content else None
        return content, self.id_index[batch.item], batch.event_type, batch.time_bucket, batch.mask

    def item_content(self, use_content: bool) -> Tensor | None:
        """Content of catalogue indices 0..N (row 0 is the zero vector)."""
        return self.content[: self.n_items + 1] if use_content else None
