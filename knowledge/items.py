"""Items the plugin can surface: help-centre articles and catalogue products.

One pydantic model per kind, sharing a base; ``Item`` is the discriminated union a loader
returns. ``Item.encoding_text()`` decides which text stands for the item in the embedding
space, so every encoder sees the same thing.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

ItemKind = Literal["article", "product"]
ITEM_KINDS: tuple[str, ...] = ("article", "product")

#: Characters of body text embedded for an article (its ``body_text()``, a vector of its own)
#: and of a product's description. MiniLM reads 256 word pieces, about 1,100-1,300 characters
#: of English; the body's opening (where help articles state what they answer) fills that
#: window. Longer bodies are cut here, on a word boundary, on purpose rather than silently by
#: the tokenizer. On the COVID FAQ, 600 / 900 / 1,200 characters gave recall@1 0.75 / 0.78 /
#: 0.80 (longer: no change, the tokenizer cuts anyway).
BODY_CHARS = 1200


class BaseItem(BaseModel):
    """Fields every item has."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[^\s]+$")]
    tenant: str = "default"
    title: Annotated[str, Field(min_length=1)]
    url: str | None = None
    tags: list[str] = Field(default_factory=list)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [t.strip() for t in value.replace(";", ",").split(",") if t.strip()]
        return value

    def snippet(self, chars: int = 160) -> str:
        """A short excerpt for display."""
        return _clip(self._main_text(), chars)

    def _main_text(self) -> str:
        return ""

    def encoding_text(self) -> str:
        """The text that stands for this item in the embedding space."""
        raise NotImplementedError

    def content_hash(self) -> str:
        """Hash of everything that changes the item's stored record."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


class Article(BaseItem):
    """A knowledge-base article."""

    kind: Literal["article"] = "article"
    body: str = ""
    section: str | None = None
    locale: str = "en"
    updated_at: datetime | None = None

    def _main_text(self) -> str:
        return self.body

    def encoding_text(self) -> str:
        # The title twice: it is the densest statement of what the article answers.
        return ". ".join(p for p in [self.title, self.title_text(), self.body_text()] if p)

    def title_text(self) -> str:
        """The title and the author's tags: short statements of what the article answers."""
        return ". ".join(p for p in [self.title, ", ".join(self.tags)] if p)

    def body_text(self) -> str:
        """The section and the body's opening: the article's text apart from its title.

        The encoder embeds ``title_text()`` and this separately and mixes the two vectors, so
        a long body cannot drown the title (see ``ContentEncoder``'s ``title_weight``).
        """
        parts = [self.section or "", _clip(_plain(self.body), BODY_CHARS)]
        return ". ".join(p for p in parts if p)


class Product(BaseItem):
    """A catalogue product."""

    kind: Literal["product"] = "product"
    description: str = ""
    #: A local path, an ``http(s)`` URL or a ``data:`` URI (see ``convrec.knowledge.images``).
    #: Bytes are accepted and stored as a ``data:`` URI so the record stays plain JSON.
    image: str | None = None
    image_alt: str | None = None
    price: Annotated[float, Field(ge=0)] | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    category: str | None = None
    brand: str | None = None
    in_stock: bool = True
    attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("image", mode="before")
    @classmethod
    def _image_bytes_to_data_uri(cls, value: Any) -> Any:
        # Items are stored as JSON in the index: raw bytes become a self-describing data URI,
        # which also puts the bytes into ``content_hash`` (a new image is a changed item).
        if isinstance(value, bytes | bytearray | memoryview):
            from convrec.knowledge.images import to_data_uri

            return to_data_uri(bytes(value)) if len(value) else None
        if isinstance(value, str) and not value.strip():
            return None
        return value

    def _main_text(self) -> str:
        return self.description

    def encoding_text(self) -> str:
        parts = [self.title, self.title]
        if self.category:
            parts.append(self.category)
        if self.brand:
            parts.append(self.brand)
        if self.image_alt:
            parts.append(self.image_alt)
        if self.attributes:
            parts.append(", ".join(f"{k}: {v}" for k, v in self.attributes.items()))
        if self.tags:
            parts.append(", ".join(self.tags))
        parts.append(_clip(self.description, BODY_CHARS))
        return ". ".join(p for p in parts if p)


Item = Annotated[Article | Product, Field(discriminator="kind")]
ITEM_ADAPTER: TypeAdapter[Article | Product] = TypeAdapter(Item)


def parse_item(data: dict[str, Any]) -> Article | Product:
    """Validate one record into an Article or a Product (by its ``kind``)."""
    return ITEM_ADAPTER.validate_python(data)


def _plain(text: str) -> str:
    """Markdown and HTML to plain words, roughly: enough for an embedding."""
    text = re.sub(r"<[^>]+>", " ", text)
    text = re.sub(r"[#>*_`|]+", " ", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def _clip(text: str, chars: int) -> str:
    text = _plain(text)
    if len(text) <= chars:
        return text
    cut = text[:chars].rsplit(" ", 1)[0]
    return cut + "…"
