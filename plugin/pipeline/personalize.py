"""Personalised reranking with a trained sequence model (serving side only).

The user's stored timeline (turns and item events) plus the live transcript become one token
sequence; the model's last state scores each candidate by its content vector and, for items seen
in training, its id embedding, so an item added after training is still scored from content.
Loading needs only the checkpoint (safetensors + JSON), never the training code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from convrec.types import Message

#: Checkpoint file whose presence means a trained model is available.
CHECKPOINT_META = "model.json"


@dataclass
class Step:
    """One token of a user's sequence: a turn (text) or an item event (item id)."""

    event_type: str  # "user_turn", "assistant_turn", or an item event type
    ts: datetime | None = None
    text: str | None = None
    item_id: str | None = None


def has_checkpoint(model_dir: Path) -> bool:
    return (Path(model_dir) / CHECKPOINT_META).is_file()


class Personalizer:
    """Scores candidates for one user's sequence with a loaded checkpoint."""

    def __init__(self, loaded: Any, encoder: Any):
        if loaded.config.use_content:
            # Vectors from another encoder would be served as nonsense: refuse them.
            recorded = loaded.metadata.get("encoder_identity") or loaded.encoder
            if recorded:
                encoder.check_compatible(recorded)
            if loaded.content_dim != encoder.dim:
                from convrec.knowledge.encoder import EncoderMismatchError

                raise EncoderMismatchError(
                    f"the model expects {loaded.content_dim}-dimensional content vectors, "
                    f"the encoder gives {encoder.dim}")
        self.loaded = loaded
        self._row = {item_id: i + 1 for i, item_id in enumerate(loaded.item_ids)}

    @property
    def reads_turns(self) -> bool:
        """Whether the model was trained on conversation turns. A model trained on behaviour
        alone has never seen a turn token; feeding it the live chat would only add noise (the
        conversation still chooses the candidates through content similarity)."""
        trained = self.loaded.metadata.get("event_types") or ()
        return "user_turn" in trained or "assistant_turn" in trained

    @classmethod
    def from_dir(cls, model_dir: Path, encoder: Any) -> Personalizer:
        from convrec.model.checkpoint import load_checkpoint

        return cls(load_checkpoint(model_dir), encoder)

    def scores(
        self,
        steps: Sequence[Step],
        step_vector: Callable[[Sequence[Step]], np.ndarray],
        candidate_ids: Sequence[str],
        candidate_vectors: np.ndarray,
    ) -> np.ndarray:
        """Model score of each candidate given the user's steps (oldest first)."""
        import torch

        from convrec.model.config import EVENT_TYPE_INDEX
        from convrec.model.network import score_candidates, time_gap_buckets

        cfg = self.loaded.config
        steps = list(steps)[-cfg.max_len:]
        if not steps:
            return np.zeros(len(candidate_ids), dtype=np.float32)
        content = torch.from_numpy(np.asarray(step_vector(steps), dtype=np.float32))[None]
        item_idx = torch.tensor([[self._row.get(s.item_id or "", 0) for s in steps]])
        types = torch.tensor([[EVENT_TYPE_INDEX.get(s.event_type, EVENT_TYPE_INDEX["view"])
                               for s in steps]])
        buckets = torch.from_numpy(time_gap_buckets(
            [s.ts.timestamp() if s.ts else None for s in steps]))[None]
        mask = torch.ones_like(item_idx, dtype=torch.bool)
        model = self.loaded.model
        with torch.no_grad():
            state = model.user_state(content if cfg.use_content else None, item_idx, types,
                                     buckets, mask)
            cand_idx = torch.tensor([self._row.get(i, 0) for i in candidate_ids])
            cand_content = torch.from_numpy(np.asarray(candidate_vectors, dtype=np.float32))
            scores = score_candidates(model, state,
                                      cand_content if cfg.use_content else None, cand_idx)
        return scores[0].numpy()


def live_steps(turns: Sequence[Message]) -> list[Step]:
    return [Step("user_turn" if t.role == "user" else "assistant_turn", t.ts, text=t.content)
            for t in turns]
