"""A support chatbot loop: ask convrec after every user turn, show suggestions only when
surfaced, and record what the user did with them (clicks and dismissals).

    python examples/support_chatbot.py [WORKSPACE]          # a scripted chat
    python examples/support_chatbot.py [WORKSPACE] --interactive

The chatbot logs the turns and the feedback; ``suggest`` logs its own impressions, so each
thing is written once. A dismissed item is not suggested to that user again.
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Iterable

from convrec import Event, Message, Recommender
from convrec.world import item_paths

USER = "u-alex"
SCRIPT = [
    # (what the user says, what they do with the first suggestion shown: click/dismiss/None)
    ("Hi! Quick question before I order.", None),
    ("My parcel was marked delivered yesterday but it's not at my door.", "click"),
    ("Also, the whistle on my blue Hearth kettle snapped. Do you sell a new kettle?",
     "dismiss"),
]


def reply_to(text: str) -> str:
    """Your bot's own answer (an LLM in a real deployment)."""
    return "Thanks, let me look into that for you."


def chat(rec: Recommender, turns: Iterable[tuple[str, str | None]],
         conversation_id: str | None = None) -> list[str]:
    """Run the conversation; returns the lines shown to the user."""
    chat_id = conversation_id or f"chat-{uuid.uuid4().hex[:8]}"
    history: list[Message] = []
    shown: list[str] = []
    for text, action in turns:
        message = Message(role="user", content=text)
        history.append(message)
        rec.log_message(USER, message, conversation_id=chat_id)
        shown.append(f"user: {text}")
        result = rec.suggest(history, user_id=USER, conversation_id=chat_id, k=2)
        if result.surfaced:
            for s in result.suggestions:
                shown.append(f"  suggested: {s.title} <{s.url}>")
            if action:  # the user clicks or dismisses the first card
                top = result.suggestions[0]
                rec.log_event(Event(user_id=USER, item_id=top.id, type=action,
                                    conversation_id=chat_id))
                shown.append(f"  ({action}ed {top.id})")
        answer = Message(role="assistant", content=reply_to(text))
        history.append(answer)
        rec.log_message(USER, answer, conversation_id=chat_id)
        shown.append(f"bot: {answer.content}")
    return shown


def _interactive() -> Iterable[tuple[str, str | None]]:
    while text := input("you> ").strip():
        action = input("  click or dismiss the first suggestion? [c/d/enter] ").strip()
        yield text, {"c": "click", "d": "dismiss"}.get(action)


def main(workspace: str | None = None, interactive: bool = False) -> None:
    rec = Recommender(workspace=workspace or tempfile.mkdtemp(prefix="convrec-"))
    rec.ingest(item_paths())
    for line in chat(rec, _interactive() if interactive else SCRIPT):
        print(line)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--interactive"]
    main(args[0] if args else None, interactive="--interactive" in sys.argv)
