"""The sequential recommender: one token per event, a causal pre-LN transformer, dot-product scores.

A token is the sum of
    projected content vector (turn text or item content)   -- if ``use_content``
  + item-id embedding (row 0 = none/unknown, kept at zero)  -- if ``use_item_ids``
  + event-type embedding + position embedding + time-gap-bucket embedding.
The user state is the transformer's output at the last real token. An item is represented
the same way as an item token (projected content + id embedding), so an item never seen in
training is still scorable from its content alone.

Shapes: B batch, L sequence length, C content dim, D model dim, N items.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from convrec.model.config import EVENT_TYPES, N_TIME_BUCKETS, ModelConfig


def time_gap_buckets(timestamps: Sequence[float | None] | np.ndarray) -> np.ndarray:
    """Log-scale bucket of the seconds since the previous event, per event.

    ``timestamps`` are Unix seconds in time order; ``None``/NaN means unknown. The first event and
    any event next to an unknown time get bucket 1 ("unknown"); a gap of g seconds gets
    ``2 + floor(log2(1 + g))`` (negative gaps count as 0), capped at the last bucket.
    """
    ts = np.array([np.nan if t is None else float(t) for t in timestamps], dtype=np.float64)
    buckets = np.ones(len(ts), dtype=np.int64)
    if len(ts) > 1:
        gaps = np.diff(ts)
        known = ~np.isnan(gaps)
        logs = np.floor(np.log2(1.0 + np.clip(gaps[known], 0.0, None))).astype(np.int64)
        buckets[1:][known] = np.minimum(2 + logs, N_TIME_BUCKETS - 1)
    return buckets


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model),
            nn.GELU(),
            nn.Linear(4 * cfg.d_model, cfg.d_model),
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x), allowed))
        return x + self.drop(self.mlp(self.ln2(x)))


class SequentialRecommender(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D = cfg.d_model
        self.content_proj = nn.Linear(cfg.content_dim, D) if cfg.use_content else None
        self.item_emb = nn.Embedding(cfg.n_items, D, padding_idx=0) if cfg.use_item_ids else None
        self.type_emb = nn.Embedding(len(EVENT_TYPES), D, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, D)
        self.time_emb = nn.Embedding(cfg.n_time_buckets, D, padding_idx=0) if cfg.use_time else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(D)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    # --- items -------------------------------------------------------------------------------
    def item_representations(self, content: Tensor | None, item_idx: Tensor) -> Tensor:
        """[..., C] content and [...] id indices -> [..., D]: projected content + id embedding."""
        rep = torch.zeros(*item_idx.shape, self.cfg.d_model, device=item_idx.device)
        if self.content_proj is not None:
            if content is None:
                raise ValueError("this model uses content features: pass content vectors")
            rep = rep + self.content_proj(content)
        if self.item_emb is not None:
            rep = rep + self.item_emb(item_idx)
        return rep

    # --- sequences ---------------------------------------------------------------------------
    def encode(
        self,
        content: Tensor | None,
        item_idx: Tensor,
        event_type: Tensor,
        time_bucket: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """All hidden states [B, L, D] of sequences [B, L] (content [B, L, C]); ``mask`` marks
        real tokens. Sequences should be left-padded so the newest event is at the end."""
        B, L = item_idx.shape
        if self.cfg.max_len < L:
            raise ValueError(f"sequence length {L} exceeds max_len={self.cfg.max_len}")
        x = self.item_representations(content, item_idx) + self.type_emb(event_type)
        # Positions count within the max_len window ending at the newest event (SASRec).
        positions = torch.arange(self.cfg.max_len - L, self.cfg.max_len, device=item_idx.device)
        x = x + self.pos_emb(positions)
        if self.time_emb is not None:
            x = x + self.time_emb(time_bucket)
        x = self.drop(x) * mask.unsqueeze(-1)
        # Each token sees itself and earlier real tokens (never an empty row, so no NaN).
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        allowed = causal & (mask[:, None, :] | torch.eye(L, dtype=torch.bool, device=x.device))
        allowed = allowed.unsqueeze(1)  # [B, 1, L, L], broadcast over heads
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)

    def user_state(
        self,
        content: Tensor | None,
        item_idx: Tensor,
        event_type: Tensor,
        time_bucket: Tensor,
        mask: Tensor,
    ) -> Tensor:
        """The user state [B, D]: the hidden state at each sequence's last real token."""
        hidden = self.encode(content, item_idx, event_type, time_bucket, mask)
        L = mask.shape[1]
        last = L - 1 - mask.flip(1).to(torch.int64).argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def forward(
        self,
        content: Tensor | None,
        item_idx: Tensor,
        event_type: Tensor,
        time_bucket: Tensor,
        mask: Tensor,
    ) -> Tensor:
        return self.encode(content, item_idx, event_type, time_bucket, mask)


@torch.no_grad()
def score_candidates(
    model: SequentialRecommender,
    state: Tensor,
    candidate_content: Tensor | None,
    candidate_idx: Tensor,
) -> Tensor:
    """Scores [B, N] of candidates (content [N, C], id indices [N]) for user states [B, D]."""
    return state @ model.item_representations(candidate_content, candidate_idx).T
