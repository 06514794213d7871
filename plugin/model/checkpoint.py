"""Checkpoints: weights in safetensors, everything else in JSON. Nothing is pickled, and loading
does not import the training code.

Layout of a checkpoint directory::

    model.safetensors   the network's weights
    model.json          {"format", "model_config", "item_ids", "encoder", "content_dim", "metadata"}

``item_ids[i - 1]`` is the item with id-embedding row i (row 0 = no id embedding).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from convrec.model.config import ModelConfig
from convrec.model.network import SequentialRecommender

FORMAT = "convrec.sequential/1"
WEIGHTS = "model.safetensors"
META = "model.json"


@dataclass
class LoadedModel:
    model: SequentialRecommender  # in eval mode
    config: ModelConfig
    item_ids: list[str]
    encoder: str | None
    content_dim: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def id_rows(self, ids: list[str]) -> list[int]:
        """Id-embedding row of each item id (0 for items the model never saw)."""
        index = {item_id: i + 1 for i, item_id in enumerate(self.item_ids)}
        return [index.get(item_id, 0) for item_id in ids]


def save_checkpoint(
    directory: str | Path,
    model: SequentialRecommender,
    item_ids: list[str],
    *,
    encoder: str | None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` with its id vocabulary and the name of the content encoder it expects."""
    if len(item_ids) + 1 != model.cfg.n_items:
        raise ValueError(f"{len(item_ids)} item ids for {model.cfg.n_items - 1} id rows")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "model_config": model.cfg.to_dict(),
        "item_ids": list(item_ids),
        "encoder": encoder,
        "content_dim": model.cfg.content_dim,
        "metadata": metadata or {},
    }
    (out / META).write_text(json.dumps(meta, indent=1))
    return out


def load_checkpoint(directory: str | Path) -> LoadedModel:
    """Read a checkpoint written by ``save_checkpoint``; the model comes back in eval mode."""
    path = Path(directory)
    meta = json.loads((path / META).read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path / META}: unknown checkpoint format {meta.get('format')!r}")
    config = ModelConfig.from_dict(meta["model_config"])
    model = SequentialRecommender(config)
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    model.eval()
    return LoadedModel(
        model=model,
        config=config,
        item_ids=list(meta["item_ids"]),
        encoder=meta["encoder"],
        content_dim=int(meta["content_dim"]),
        metadata=meta.get("metadata", {}),
    )
