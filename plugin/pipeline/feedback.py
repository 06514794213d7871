"""What the history says about past suggestions: which surfaced lists were taken up, after
which user turn. The gate is calibrated on these decisions (``logged_decisions``) and the
encoder adapted on the clicks (``logged_clicks``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Protocol

from convrec.pipeline.gate import Decision, Gate

#: Feedback that says a surfaced suggestion was worth showing (``Event.type``).
POSITIVE_EVENTS: tuple[str, ...] = ("click", "read", "add_to_cart", "purchase", "rate")


class _History(Protocol):
    """What ``logged_decisions`` reads (``convrec.history.HistoryStore`` has it)."""

    def users(self, tenant: str = ...) -> list[str]: ...

    def history(self, user_id: str, tenant: str = ..., limit: int | None = ...) -> Any: ...


def _reacted_lists(store: _History, tenant: str,
                   window: timedelta) -> Iterable[tuple[list, list, str | None]]:
    """Each surfaced suggestion list logged in ``store``: (its impressions, the events on its
    items within ``window`` afterwards, in its conversation when the event names one, the last
    user message logged in that conversation up to it)."""
    for user in store.users(tenant):
        h = store.history(user, tenant=tenant)
        grouped: dict[tuple, list] = {}
        for imp in h.impressions:
            if imp.surfaced:
                grouped.setdefault((imp.conversation_id, imp.ts), []).append(imp)
        for (conv, ts), imps in grouped.items():
            items = {i.item_id for i in imps}
            reactions = [e for e in h.events
                         if e.item_id in items and ts <= e.ts <= ts + window
                         and (conv is None or e.conversation_id in (None, conv))]
            said = [m for m in getattr(h, "messages", ())
                    if m.role == "user" and m.ts <= ts and conv is not None
                    and m.conversation_id == conv]
            yield imps, reactions, (said[-1].content if said else None)


def logged_decisions(
    store: _History, *, tenant: str = "default",
    positive_events: Iterable[str] = POSITIVE_EVENTS, window: timedelta = timedelta(hours=24),
    unanswered: str = "negative",
) -> list[Decision]:
    """The surfacing decisions logged in a history store, labelled by what the user did next.

    A decision is one surfaced suggestion list (the impressions of one conversation logged at
    one time); its relevance is the list's highest (what the gate read: the best content
    match, whatever rank a personalised re-ranking gave it). It is positive when the user
    clicked, read, bought, ... any of its items within ``window`` afterwards (in the same
    conversation when the event names one); a dismissal or no reaction is negative
    (``unanswered="skip"`` leaves decisions without any feedback out instead). Its ``text`` is
    the last user message logged in that conversation up to the decision, if any.

    Only surfaced decisions are logged, so these data say nothing below the threshold in
    force: lower it for a while (or log silent decisions) to calibrate the lower range.
    """
    positive = set(positive_events)
    out: list[Decision] = []
    for imps, reactions, said in _reacted_lists(store, tenant, window):
        if not reactions and unanswered == "skip":
            continue
        out.append(Decision(label=any(e.type in positive for e in reactions),
                            relevance=max(i.score for i in imps), text=said))
    return out


def logged_clicks(
    store: _History, *, tenant: str = "default",
    positive_events: Iterable[str] = POSITIVE_EVENTS, window: timedelta = timedelta(hours=24),
) -> list[tuple[str, str]]:
    """(what the user said, the item they took up) for every suggested item that was clicked,
    read, bought, ... after a surfaced list, read as ``logged_decisions`` reads them; lists
    without a logged user message are left out. What ``Recommender.adapt_encoder`` learns
    your users' wording from."""
    positive = set(positive_events)
    out: list[tuple[str, str]] = []
    for _, reactions, said in _reacted_lists(store, tenant, window):
        if said:
            taken = dict.fromkeys(e.item_id for e in reactions if e.type in positive)
            out.extend((said, item_id) for item_id in taken if item_id)
    return out


def decisions_from_history(
    store: _History, gate: Gate, *, tenant: str = "default",
    positive_events: Iterable[str] = POSITIVE_EVENTS, window: timedelta = timedelta(hours=24),
    unanswered: str = "negative",
) -> tuple[list[float], list[bool]]:
    """(raw scores, labels) of ``logged_decisions``, mapped back through ``gate``, the gate
    that was in force (one without intent weights; ``Recommender.calibrate_gate`` handles
    both)."""
    decisions = logged_decisions(store, tenant=tenant, positive_events=positive_events,
                                 window=window, unanswered=unanswered)
    return [d.raw_score(gate) for d in decisions], [d.label for d in decisions]
