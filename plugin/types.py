"""Pydantic types every room and every adapter speaks.

Nothing passes raw dicts between rooms: a transcript is a list of ``Message``, behaviour is an
``Event``, and what the plugin answers is a ``SuggestionResult`` of ``Suggestion``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from convrec.knowledge.items import Article, Item, ItemKind, Product  # re-exported

__all__ = [
    "Article",
    "Event",
    "EVENT_TYPES",
    "EventType",
    "Item",
    "ItemKind",
    "Message",
    "Product",
    "Role",
    "Suggestion",
    "SuggestionResult",
    "parse_transcript",
]

Role = Literal["user", "assistant", "system", "tool"]
EventType = Literal[
    "view", "click", "add_to_cart", "purchase", "read", "rate", "dismiss", "search"
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """One conversation turn."""

    model_config = ConfigDict(extra="ignore")

    role: Role
    content: str
    ts: datetime | None = None

    @field_validator("role", mode="before")
    @classmethod
    def _normalise_role(cls, value: object) -> object:
        if isinstance(value, str):
            lowered = value.strip().lower()
            return _ROLE_ALIASES.get(lowered, lowered)
        return value


_ROLE_ALIASES = {
    "human": "user", "customer": "user", "seeker": "user", "me": "user",
    "ai": "assistant", "agent": "assistant", "bot": "assistant", "support": "assistant",
    "recommender": "assistant",
}


class Event(BaseModel):
    """A behaviour event of one user on one item (or a search)."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[str, Field(min_length=1)]
    item_id: str | None = None
    type: EventType
    ts: datetime = Field(default_factory=utcnow)
    value: float | None = None
    text: str | None = None
    tenant: str = "default"
    conversation_id: str | None = None

    @field_validator("ts")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        """A naive time is taken as UTC, so every stored time is comparable."""
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class Suggestion(BaseModel):
    """One item the plugin proposes to surface, with the reason why."""

    id: str
    kind: ItemKind
    title: str
    url: str | None = None
    snippet: str = ""
    score: float
    reason: str
    price: float | None = None
    currency: str | None = None
    in_stock: bool | None = None


class SuggestionResult(BaseModel):
    """What ``suggest`` answers: the suggestions, whether to surface them, and why."""

    suggestions: list[Suggestion] = Field(default_factory=list)
    surfaced: bool
    note: str
    relevance: float = Field(description="Calibrated relevance of the best candidate, 0..1.")
    threshold: float
    conversation_id: str | None = None


_TURN = re.compile(r"^\s*([A-Za-z][A-Za-z _-]{0,30}?)\s*:\s?(.*)$")


def parse_transcript(transcript: str | list[Message] | list[dict]) -> list[Message]:
    """A transcript as messages: a list of {role, content} or "User: ... / Assistant: ..." text.

    Lines that do not start with a known speaker continue the previous turn; text with no
    speaker at all is one user turn.
    """
    if isinstance(transcript, list):
        return [m if isinstance(m, Message) else Message.model_validate(m) for m in transcript]
    messages: list[Message] = []
    for line in transcript.splitlines():
        match = _TURN.match(line)
        role = None
        if match:
            speaker = match.group(1).strip().lower()
            role = _ROLE_ALIASES.get(speaker, speaker)
        if match and role in ("user", "assistant", "system"):
            messages.append(Message(role=role, content=match.group(2).strip()))
        elif line.strip():
            if messages:
                last = messages[-1]
                messages[-1] = last.model_copy(
                    update={"content": (last.content + "\n" + line.strip()).strip()}
                )
            else:
                messages.append(Message(role="user", content=line.strip()))
    return [m for m in messages if m.content]
