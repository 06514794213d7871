"""Suggestions on the example world (real MiniLM, real Chroma, real SQLite history)."""

from __future__ import annotations

import numpy as np
import pytest

from convrec.pipeline.rules import Candidate, mmr
from convrec.types import Event
from convrec.world import conversations

CHATS = {c.id: c for c in conversations()}


def test_late_parcel_surfaces_the_shipping_delay_article_first(world):
    """Asked after every user turn, the first thing surfaced is the shipping-delays article."""
    chat = CHATS["late-parcel"]
    first = None
    for n, message in enumerate(chat.messages):
        if message.role == "user":
            result = world.suggest(chat.messages[: n + 1], user_id=chat.user_id,
                                   conversation_id=chat.id)
            if result.surfaced:
                first = result.suggestions[0]
                break
    assert first is not None and first.id == "shipping-delays" and first.kind == "article"
    assert first.url and first.url.startswith("https://help.fernhill.example/")
    assert first.reason and first.snippet


def test_nothing_relevant_surfaces_nothing_and_says_why(world):
    result = world.suggest(CHATS["small-talk"].messages)
    assert not result.surfaced and result.suggestions == []
    assert "relevant enough" in result.note and result.relevance < result.threshold


#: Known misses of the zero-shot path, kept visible: strict, so a fix shows up as a failure.
#: (Empty since article bodies are embedded up to 1,200 characters: "return-gift" was one.)
KNOWN_MISSES: dict[str, str] = {}


@pytest.mark.parametrize("chat_id", [
    pytest.param(c.id, marks=pytest.mark.xfail(strict=True, reason=KNOWN_MISSES[c.id]))
    if c.id in KNOWN_MISSES else c.id
    for c in conversations() if c.expect_first
])
def test_replaying_each_world_chat_surfaces_its_expected_item(world, chat_id):
    """As in a support bot: suggest after every user turn of one conversation. The expected
    item must be surfaced at some turn, in the top 3 of that turn, and small talk never."""
    chat = CHATS[chat_id]
    shown: list[list[str]] = []
    for n, message in enumerate(chat.messages):
        if message.role == "user":
            result = world.suggest(chat.messages[: n + 1], user_id=chat.user_id,
                                   conversation_id=chat.id)
            shown.append([s.id for s in result.suggestions])
    assert any(chat.expect_first in ids[:3] for ids in shown), shown


def test_small_talk_stays_silent_at_every_turn(world):
    chat = CHATS["small-talk"]
    for n, message in enumerate(chat.messages):
        if message.role == "user":
            assert not world.suggest(chat.messages[: n + 1]).surfaced


def test_recent_turns_outweigh_old_ones(world):
    password = "I forgot my password and can't sign in."
    parcel = "My parcel is late, it was due on Monday and tracking is stuck."
    parcel_last = world.suggest(f"User: {password}\nAssistant: I see.\nUser: {parcel}")
    password_last = world.suggest(f"User: {parcel}\nAssistant: I see.\nUser: {password}")
    assert parcel_last.suggestions[0].id in {"shipping-delays", "track-parcel", "lost-parcel"}
    assert password_last.suggestions[0].id == "reset-password"


def test_user_turns_outweigh_assistant_turns(world):
    transcript = ("User: my card keeps getting declined at checkout\n"
                  "Assistant: Sorry! Is this about an order that's late or a parcel you're "
                  "waiting for?")
    assert world.suggest(transcript).suggestions[0].id == "payment-failed"


def test_items_linked_in_the_conversation_are_skipped(world):
    transcript = ("User: my parcel is late, tracking stuck for days\n"
                  "Assistant: Have a look at https://help.fernhill.example/articles/"
                  "shipping-delays\nUser: I read it, still nothing after ten days")
    assert "shipping-delays" not in [s.id for s in world.suggest(transcript).suggestions]


def test_a_conversation_never_repeats_a_suggestion(world):
    chat = CHATS["late-parcel"]
    first = world.suggest(chat.messages, user_id="u1", conversation_id="c1")
    second = world.suggest(chat.messages, user_id="u1", conversation_id="c1")
    assert first.surfaced
    assert not {s.id for s in first.suggestions} & {s.id for s in second.suggestions}
    shown = world.history("u1").impressions
    assert [i.item_id for i in shown][: len(first.suggestions)] == [
        s.id for s in first.suggestions]


def test_dismissed_items_are_not_suggested_again(world):
    chat = CHATS["late-parcel"]
    world.log_event(Event(user_id="u2", item_id="shipping-delays", type="dismiss"))
    ids = [s.id for s in world.suggest(chat.messages, user_id="u2").suggestions]
    assert "shipping-delays" not in ids


def test_filters_kinds_stock_and_price(world):
    transcript = "User: I'm looking for a kettle for my gas stove"
    result = world.suggest(transcript, k=5, kinds=["product"],
                           filters={"in_stock": True, "price_max": 60})
    assert result.surfaced and result.suggestions
    for s in result.suggestions:
        assert s.kind == "product" and s.in_stock and s.price <= 60
    products = world.get_items([s.id for s in result.suggestions])
    assert all("kettle" in (p.title + p.description).lower() for p in products)


def test_explanations_name_the_turn_that_matched(world):
    transcript = "User: hello\nAssistant: hi, how can I help?\nUser: my cast iron pan has rust"
    top = world.suggest(transcript).suggestions[0]
    assert "my cast iron pan has rust" in top.reason


def test_plain_text_and_message_list_give_the_same_answer(world):
    chat = CHATS["card-declined"]
    text = "\n".join(f"{m.role.title()}: {' '.join(m.content.split())}" for m in chat.messages)
    as_list = [s.id for s in world.suggest(chat.messages).suggestions]
    assert [s.id for s in world.suggest(text).suggestions] == as_list


def test_mmr_prefers_a_diverse_second_pick():
    from convrec.knowledge.items import parse_item

    def cand(i, vec, score):
        item = parse_item({"id": f"i{i}", "kind": "article", "title": f"t{i}"})
        v = np.asarray(vec, dtype=np.float32)
        return Candidate(item, score, v / np.linalg.norm(v))

    pool = [cand(0, [1, 0], 0.9), cand(1, [0.99, 0.05], 0.89), cand(2, [0, 1], 0.8)]
    assert [c.item.id for c in mmr(pool, 2, lam=0.5)] == ["i0", "i2"]
    assert [c.item.id for c in mmr(pool, 2, lam=1.0)] == ["i0", "i1"]
    assert [c.item.id for c in mmr(pool, 3, lam=1.0, max_per_kind=1)] == ["i0"]
