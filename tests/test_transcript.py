"""Transcripts: lists of messages and "User: ... / Assistant: ..." text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from convrec.types import Message, parse_transcript


def test_text_transcript_with_aliases_and_continuations():
    messages = parse_transcript(
        "Customer: my parcel is late\nit was due Monday\nAgent: sorry!\nUser: thanks")
    assert [(m.role, m.content) for m in messages] == [
        ("user", "my parcel is late\nit was due Monday"), ("assistant", "sorry!"),
        ("user", "thanks")]


def test_text_without_speakers_is_one_user_turn():
    assert parse_transcript("where is my order?") == [
        Message(role="user", content="where is my order?")]


def test_list_of_dicts_and_role_aliases():
    messages = parse_transcript([{"role": "human", "content": "hi"},
                                 {"role": "AI", "content": "hello"}])
    assert [m.role for m in messages] == ["user", "assistant"]


_line = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1,
                max_size=40).map(str.strip).filter(lambda s: s and ":" not in s)


@given(st.lists(st.tuples(st.sampled_from(["user", "assistant"]), _line), min_size=1,
                max_size=8))
def test_rendered_messages_parse_back(turns):
    text = "\n".join(f"{role.title()}: {content}" for role, content in turns)
    parsed = parse_transcript(text)
    assert [(m.role, m.content) for m in parsed] == turns
