"""Settings: one typed object, read from arguments or ``CONVREC_*`` environment variables.

Nested sections are plain pydantic models; set them from the environment with a double
underscore, e.g. ``CONVREC_SUGGEST__THRESHOLD=0.6``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SuggestSettings(BaseModel):
    """How suggestions are made from a conversation (the zero-shot path and the rules)."""

    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0,
        description="Surface suggestions only when the calibrated relevance of the best "
                    "candidate reaches this (0..1). Higher is quieter.")
    gate_center: float = Field(
        default=0.42, description="Cosine similarity at which relevance is 0.5.")
    gate_scale: float = Field(
        default=14.0, gt=0, description="Steepness of the cosine -> relevance curve.")
    anchor_gate: bool = Field(
        default=True,
        description="With an encoder other than the packaged MiniLM (and no fitted gate.json "
                    "nor gate_center/gate_scale set), move the curve onto where everyday "
                    "off-topic chat scores against your items (convrec.pipeline.anchor).")
    min_item_relevance: float = Field(
        default=0.5, ge=0, le=1,
        description="Once surfacing, drop items whose own relevance is below this.")
    user_weight: float = Field(default=1.0, ge=0, description="Weight of user turns.")
    assistant_weight: float = Field(default=0.3, ge=0, description="Weight of assistant turns.")
    recency_half_life: float = Field(
        default=3.0, gt=0, description="Turns after which a turn's weight halves.")
    max_turns: int = Field(default=8, ge=1, description="Most recent turns that are read.")
    candidates: int = Field(default=50, ge=1, description="Candidates fetched before rules.")
    mmr_lambda: float = Field(
        default=0.75, ge=0, le=1, description="1 = pure relevance, 0 = pure diversity.")
    model_weight: float = Field(
        default=1.0, ge=0,
        description="With a trained model: weight of its score against content similarity "
                    "when ranking (0 = content only, 1 = equal say). The gate always reads "
                    "content relevance.")
    include_out_of_stock: bool = Field(
        default=False,
        description="Suggest products that are out of stock (unless a filter asks for them, "
                    "they are left out).")
    default_k: int = Field(default=3, ge=1, le=10)
    max_per_kind: int | None = Field(
        default=None, ge=1, description="At most this many suggestions of one kind.")


class Settings(BaseSettings):
    """Everything convrec reads. Defaults make an embedded, offline set-up."""

    model_config = SettingsConfigDict(
        env_prefix="CONVREC_", env_nested_delimiter="__", extra="ignore"
    )

    workspace: Path = Field(
        default=Path(".convrec"),
        description="Folder for the Chroma store, the SQLite history, caches and models.")
    encoder_model: str | None = Field(
        default=None,
        description="sentence-transformers model name or folder; None = packaged MiniLM.")
    title_weight: float | None = Field(
        default=0.5, ge=0, le=1,
        description="Share of an article's title in its vector (the rest: its body); "
                    "None embeds title and body as one text.")
    image_weight: float = Field(
        default=0.5, ge=0, le=1,
        description="With a CLIP-style encoder: share of the image in a product's vector.")
    fetch_image_urls: bool = Field(
        default=False, description="Download product images given as http(s) URLs.")
    image_root: Path | None = Field(
        default=None, description="Folder that relative product image paths start from.")
    chroma_url: str | None = Field(
        default=None, description="Chroma server URL; None = PersistentClient in workspace.")
    collection: str = "convrec-items"
    tenant: str = "default"
    model_dir: Path | None = Field(
        default=None, description="Trained model checkpoint; default: workspace/model.")
    log_user_turns: bool = Field(
        default=True,
        description="When a suggest call logs impressions (a user_id and a conversation_id), "
                    "also store the user turn it answered, unless already logged: "
                    "calibrating the gate on words and adapting the encoder on clicks read it.")
    suggest: SuggestSettings = Field(default_factory=SuggestSettings)

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir or self.workspace / "model"
