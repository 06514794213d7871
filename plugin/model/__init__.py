"""The sequential deep model: one token per event (conversation turn or item event), a causal
transformer over them, dot-product scores against item representations.

Serving needs only ``load_checkpoint`` and the network. Training is ``convrec.model.train.train``;
this package does not import it.
"""

from convrec.model.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from convrec.model.config import (
    EVENT_TYPE_INDEX,
    EVENT_TYPES,
    N_TIME_BUCKETS,
    ModelConfig,
    TrainConfig,
)
from convrec.model.data import (
    Batch,
    Example,
    FeatureTables,
    Split,
    UserSequence,
    leave_one_out,
)
from convrec.model.evaluate import evaluate
from convrec.model.network import SequentialRecommender, score_candidates, time_gap_buckets

__all__ = [
    "EVENT_TYPES",
    "EVENT_TYPE_INDEX",
    "N_TIME_BUCKETS",
    "Batch",
    "Example",
    "FeatureTables",
    "LoadedModel",
    "ModelConfig",
    "SequentialRecommender",
    "Split",
    "TrainConfig",
    "UserSequence",
    "evaluate",
    "leave_one_out",
    "load_checkpoint",
    "save_checkpoint",
    "score_candidates",
    "time_gap_buckets",
]
