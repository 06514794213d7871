"""HistoryStore on real SQLite files: round trips, tenants, forgetting, imports, threads."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from convrec.events import EventFileError
from convrec.history import (
    SCHEMA_VERSION,
    ConversationOwnerError,
    HistoryMessage,
    HistoryStore,
    ItemEventEntry,
    TurnEntry,
)
from convrec.types import Event, Message, Suggestion

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def suggestion(item_id: str, score: float = 0.5) -> Suggestion:
    return Suggestion(id=item_id, kind="article", title=item_id.title(), score=score, reason="r")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "history.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[HistoryStore]:
    with HistoryStore(db_path) as opened:
        yield opened


def table_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        tables = ("users", "conversations", "messages", "events", "impressions")
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}


# -- opening ------------------------------------------------------------------------------


def test_file_is_wal_with_foreign_keys_and_a_schema_version(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        assert store.journal_mode == "wal"
        assert store.schema_version == SCHEMA_VERSION >= 1
    with sqlite3.connect(db_path) as conn:  # persisted in the file, seen by other connections
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(
                "INSERT INTO messages (tenant, user_id, role, text, ts_us)"
                " VALUES ('default', 'nobody', 'user', 'x', 0)"
            )


def test_reopening_keeps_data_and_does_not_migrate_again(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        store.log_message("u1", Message(role="user", content="hello", ts=T0))
    with HistoryStore(db_path) as store:
        assert [m.content for m in store.history("u1").messages] == ["hello"]


def test_newer_schema_is_refused(db_path: Path) -> None:
    HistoryStore(db_path).close()
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="Upgrade convrec"):
        HistoryStore(db_path)


def test_parent_folders_are_created(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "a" / "b" / "h.db") as store:
        store.log_event(Event(user_id="u", item_id="i", type="view", ts=T0))
    assert (tmp_path / "a" / "b" / "h.db").exists()


def test_memory_store_works() -> None:
    with HistoryStore(":memory:") as store:
        store.log_event(Event(user_id="u", item_id="i", type="view", ts=T0))
        assert store.count_events() == 1


def test_closed_store_refuses_calls(db_path: Path) -> None:
    store = HistoryStore(db_path)
    store.close()
    store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        store.users()


# -- round trips ----------------------------------------------------------------------------


def test_messages_round_trip(store: HistoryStore) -> None:
    store.log_message("u1", Message(role="user", content="my card was declined", ts=at(0)), "c1")
    store.log_message("u1", Message(role="assistant", content="Sorry!", ts=at(1)), "c1")
    store.log_message("u1", Message(role="user", content="no conversation", ts=at(2)))
    messages = store.history("u1").messages
    assert messages == [
        HistoryMessage(role="user", content="my card was declined", ts=at(0), conversation_id="c1"),
        HistoryMessage(role="assistant", content="Sorry!", ts=at(1), conversation_id="c1"),
        HistoryMessage(role="user", content="no conversation", ts=at(2)),
    ]
    assert all(isinstance(m, Message) for m in messages)
    assert store.conversation_messages("c1") == messages[:2]


def test_message_without_time_is_stamped_now(store: HistoryStore) -> None:
    before = datetime.now(UTC)
    store.log_message("u1", Message(role="user", content="hi"))
    (message,) = store.history("u1").messages
    assert before <= message.ts <= datetime.now(UTC)


def test_events_round_trip_exactly(store: HistoryStore) -> None:
    events = [
        Event(user_id="u1", item_id="a", type="view", ts=at(0.000001), conversation_id="c1"),
        Event(user_id="u1", item_id="a", type="rate", ts=at(1), value=4.5),
        Event(user_id="u1", type="search", ts=at(2), text="refund policy"),
        Event(user_id="u1", item_id="b", type="purchase", ts=at(3), value=19.99),
    ]
    store.log_event(events[0])
    assert store.log_events(events[1:]) == 3
    assert store.history("u1").events == events
    assert store.count_events() == 4
    assert store.count_events("u1", type="rate") == 1
    assert store.count_events("someone-else") == 0


def test_naive_event_time_is_taken_as_utc(store: HistoryStore) -> None:
    store.log_event(Event(user_id="u", item_id="a", type="view", ts=datetime(2024, 5, 1, 12)))
    assert store.history("u").events[0].ts == T0


def test_log_events_is_all_or_nothing(store: HistoryStore) -> None:
    good = Event(user_id="u1", item_id="a", type="view", ts=at(0))
    bad = Event(user_id="u1", type="rate", ts=at(1))  # no item
    with pytest.raises(ValueError, match="field 'item'"):
        store.log_events([good, good, bad])
    assert store.count_events() == 0
    assert store.users() == []


def test_log_events_accepts_a_generator(store: HistoryStore) -> None:
    count = store.log_events(
        Event(user_id=f"u{i % 3}", item_id=f"i{i}", type="click", ts=at(i)) for i in range(10)
    )
    assert count == 10
    assert store.users() == ["u0", "u1", "u2"]


def test_impressions_round_trip_and_feed_suggested_item_ids(store: HistoryStore) -> None:
    shown = [suggestion("a", 0.9), suggestion("b", 0.7)]
    store.log_impressions("u1", "c1", shown, surfaced=True, ts=at(0))
    store.log_impressions("u1", "c1", [suggestion("z", 0.2)], surfaced=False, ts=at(1))
    store.log_impressions("u1", "c2", [suggestion("c")], surfaced=True, ts=at(2))
    impressions = store.history("u1").impressions
    assert [(i.item_id, i.rank, i.score, i.surfaced, i.conversation_id) for i in impressions] == [
        ("a", 1, 0.9, True, "c1"),
        ("b", 2, 0.7, True, "c1"),
        ("z", 1, 0.2, False, "c1"),
        ("c", 1, 0.5, True, "c2"),
    ]
    assert impressions[0].kind == "article" and impressions[0].ts == at(0)
    assert store.suggested_item_ids("c1") == {"a", "b"}
    assert store.suggested_item_ids("c1", include_unsurfaced=True) == {"a", "b", "z"}
    assert store.suggested_item_ids("c2") == {"c"}
    assert store.suggested_item_ids("c3") == set()


def test_dismissed_item_ids(store: HistoryStore) -> None:
    store.log_events(
        [
            Event(user_id="u1", item_id="a", type="dismiss", ts=at(0)),
            Event(user_id="u1", item_id="b", type="click", ts=at(1)),
            Event(user_id="u2", item_id="c", type="dismiss", ts=at(2)),
        ]
    )
    assert store.dismissed_item_ids("u1") == {"a"}
    assert store.dismissed_item_ids("u3") == set()


def test_history_limit_keeps_the_latest_in_time_order(store: HistoryStore) -> None:
    for i in (3, 1, 4, 0, 2):  # logged out of order
        store.log_message("u", Message(role="user", content=f"m{i}", ts=at(i)))
        store.log_event(Event(user_id="u", item_id=f"i{i}", type="view", ts=at(i)))
    history = store.history("u", limit=2)
    assert [m.content for m in history.messages] == ["m3", "m4"]
    assert [e.item_id for e in history.events] == ["i3", "i4"]
    assert [m.content for m in store.history("u").messages] == [f"m{i}" for i in range(5)]
    assert store.history("u", limit=0).messages == []
    with pytest.raises(ValueError):
        store.history("u", limit=-1)


def test_timeline_merges_turns_and_item_events_in_time_order(store: HistoryStore) -> None:
    store.log_event(Event(user_id="u", item_id="a", type="click", ts=at(2), conversation_id="c"))
    store.log_message("u", Message(role="user", content="hi", ts=at(0)), "c")
    store.log_event(Event(user_id="u", type="search", ts=at(1), text="no item: not in timeline"))
    store.log_message("u", Message(role="assistant", content="try this", ts=at(2)), "c")
    store.log_event(Event(user_id="u", item_id="a", type="rate", value=5, ts=at(3)))
    store.log_message("u", Message(role="user", content="thanks", ts=at(3)), "c")
    timeline = store.timeline("u")
    assert timeline == [
        TurnEntry(ts=at(0), role="user", text="hi", conversation_id="c"),
        TurnEntry(ts=at(2), role="assistant", text="try this", conversation_id="c"),
        ItemEventEntry(ts=at(2), item_id="a", type="click", conversation_id="c"),
        TurnEntry(ts=at(3), role="user", text="thanks", conversation_id="c"),
        ItemEventEntry(ts=at(3), item_id="a", type="rate", value=5.0),
    ]
    assert store.timeline("u", limit=2) == timeline[-2:]
    assert [e.kind for e in timeline] == ["turn", "turn", "event", "turn", "event"]


def test_conversations_belong_to_their_first_user(store: HistoryStore) -> None:
    store.log_message("u1", Message(role="user", content="hi", ts=at(5)), "c1")
    store.log_event(Event(user_id="u1", item_id="a", type="view", ts=at(1), conversation_id="c1"))
    with pytest.raises(ConversationOwnerError):
        store.log_message("u2", Message(role="user", content="hi"), "c1")
    with pytest.raises(ConversationOwnerError):
        store.log_impressions("u2", "c1", [suggestion("a")], surfaced=True)
    with pytest.raises(ConversationOwnerError):
        store.log_event(Event(user_id="u2", item_id="a", type="view", conversation_id="c1"))
    assert store.users() == ["u1"]  # nothing of the refused calls was written
    (conversation,) = store.conversations("u1")
    assert (conversation.conversation_id, conversation.started) == ("c1", at(1))


def test_empty_ids_are_refused(store: HistoryStore) -> None:
    with pytest.raises(ValueError):
        store.log_message("", Message(role="user", content="x"))
    with pytest.raises(ValueError):
        store.log_message("u", Message(role="user", content="x"), conversation_id="")
    with pytest.raises(ValueError):
        store.log_impressions("u", "c", [suggestion("a")], surfaced=True, tenant="")


# -- tenants --------------------------------------------------------------------------------


def test_tenants_are_isolated(store: HistoryStore) -> None:
    for tenant in ("acme", "globex"):
        store.log_message("u1", Message(role="user", content=tenant, ts=at(0)), "c1", tenant)
        store.log_event(
            Event(user_id="u1", item_id=f"{tenant}-i", type="dismiss", ts=at(1), tenant=tenant)
        )
        store.log_impressions("u1", "c1", [suggestion(f"{tenant}-s")], True, tenant, ts=at(2))
    acme = store.history("u1", tenant="acme")
    assert [m.content for m in acme.messages] == ["acme"]
    assert [e.item_id for e in acme.events] == ["acme-i"]
    assert [i.item_id for i in acme.impressions] == ["acme-s"]
    assert store.suggested_item_ids("c1", tenant="globex") == {"globex-s"}
    assert store.dismissed_item_ids("u1", tenant="globex") == {"globex-i"}
    assert [e.kind for e in store.timeline("u1", tenant="acme")] == ["turn", "event"]
    assert store.history("u1").messages == []  # nothing in the default tenant
    assert store.users("acme") == ["u1"] and store.users() == []
    assert store.tenants() == ["acme", "globex"]
    assert store.count_events(tenant="acme") == 1

    assert store.forget_user("u1", tenant="acme") == 5  # user, conversation, 3 rows
    assert store.history("u1", tenant="acme").messages == []
    assert [m.content for m in store.history("u1", tenant="globex").messages] == ["globex"]


# -- forgetting -----------------------------------------------------------------------------


def test_forget_user_removes_everything_and_only_that_user(
    store: HistoryStore, db_path: Path
) -> None:
    for user in ("u1", "u2"):
        store.log_message(user, Message(role="user", content="hi", ts=at(0)), f"{user}-c")
        store.log_message(user, Message(role="assistant", content="hello", ts=at(1)), f"{user}-c")
        store.log_event(
            Event(user_id=user, item_id="a", type="click", ts=at(2), conversation_id=f"{user}-c")
        )
        store.log_event(Event(user_id=user, type="search", ts=at(3), text="secret"))
        store.log_impressions(user, f"{user}-c", [suggestion("a"), suggestion("b")], True)
    before = table_counts(db_path)
    assert store.forget_user("u1") == 1 + 1 + 2 + 2 + 2
    after = table_counts(db_path)
    assert after == {table: count // 2 for table, count in before.items()}
    empty = store.history("u1")
    assert (empty.messages, empty.events, empty.impressions) == ([], [], [])
    assert store.timeline("u1") == [] and store.conversations("u1") == []
    assert store.suggested_item_ids("u1-c") == set()
    assert store.users() == ["u2"]
    u2 = store.history("u2")
    assert (len(u2.messages), len(u2.events), len(u2.impressions)) == (2, 2, 2)
    assert store.forget_user("u1") == 0


def test_forgotten_text_does_not_linger_in_the_file(db_path: Path) -> None:
    with HistoryStore(db_path) as store:
        store.log_message("u1", Message(role="user", content="zebra-passphrase-42", ts=T0))
        store.log_message("u2", Message(role="user", content="keep me", ts=T0))
        store.forget_user("u1")
    data = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    assert b"zebra-passphrase-42" not in data
    assert b"keep me" in data


# -- imports --------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: Sequence[object]) -> Path:
    path.write_text(
        "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    return path


GOOD = [
    {"user": "u1", "item": "a", "type": "view", "ts": 1714564800, "conversation": "c1"},
    {"user": "u1", "item": "b", "type": "rate", "ts": "2024-05-01T12:00:01Z", "value": 4},
    {"user": "u2", "type": "search", "ts": 1714564802, "text": "reset password"},
]


def test_import_jsonl(store: HistoryStore, tmp_path: Path) -> None:
    report = store.import_events(write_jsonl(tmp_path / "e.jsonl", GOOD), tenant="acme")
    assert (report.rows, report.imported, report.rejected, report.format) == (3, 3, [], "jsonl")
    assert store.users("acme") == ["u1", "u2"]
    events = store.history("u1", tenant="acme").events
    assert [(e.item_id, e.type, e.value, e.conversation_id) for e in events] == [
        ("a", "view", None, "c1"),
        ("b", "rate", 4.0, None),
    ]
    assert store.count_events(tenant="default") == 0


def test_import_csv(store: HistoryStore, tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        "user,item,type,ts,value,text\n"
        "u1,a,click,1714564800,,\n"
        "u1,,search,2024-05-01 12:00:01,,refund\n",
        encoding="utf-8",
    )
    report = store.import_events(path, known_item_ids={"a"})
    assert (report.format, report.imported) == ("csv", 2)
    assert [e.type for e in store.history("u1").events] == ["click", "search"]


@pytest.mark.parametrize(
    ("bad_row", "field", "needle"),
    [
        ('{"user": "u3", "item": "a", ', None, "malformed JSON"),
        ({"user": "u3", "item": "a", "type": "like", "ts": 1}, "type", "unknown event type"),
        ({"user": "u3", "item": "nope", "type": "view", "ts": 1}, "item", "unknown item id"),
        ({"user": "u3", "item": "a", "type": "view", "ts": "soon"}, "ts", "ISO 8601"),
        ({"user": "u3", "item": "a", "type": "rate", "ts": 1, "value": "5 stars"}, "value",
         "number"),
    ],
)
def test_a_bad_file_writes_nothing_and_names_file_line_field(
    store: HistoryStore,
    db_path: Path,
    tmp_path: Path,
    bad_row: object,
    field: str | None,
    needle: str,
) -> None:
    path = write_jsonl(tmp_path / "e.jsonl", [*GOOD, bad_row])
    with pytest.raises(EventFileError) as caught:
        store.import_events(path, known_item_ids={"a", "b"})
    (error,) = caught.value.errors
    assert (error.path, error.line, error.field) == (str(path), 4, field)
    assert needle in error.message
    prefix = f"{path}:4: " + (f"field '{field}': " if field else "")
    assert prefix in str(caught.value)
    assert set(table_counts(db_path).values()) == {0}


def test_a_bad_csv_writes_nothing_and_names_file_line_field(
    store: HistoryStore, db_path: Path, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "user,item,type,ts,value\n"
        "u1,a,view,1714564800,\n"
        "u1,a,like,1714564801,\n"
        "u1,nope,view,1714564802,\n"
        "u1,a,view,last tuesday,\n"
        "u1,a,rate,1714564804,high\n",
        encoding="utf-8",
    )
    with pytest.raises(EventFileError) as caught:
        store.import_events(path, known_item_ids={"a"})
    assert [(e.line, e.field) for e in caught.value.errors] == [
        (3, "type"),
        (4, "item"),
        (5, "ts"),
        (6, "value"),
    ]
    message = str(caught.value)
    assert message.startswith(f"{path}: 4 invalid rows (of 5)")
    assert f"{path}:6: field 'value':" in message
    assert set(table_counts(db_path).values()) == {0}
    report = store.import_events(path, known_item_ids={"a"}, skip_invalid=True)
    assert (report.imported, [e.line for e in report.rejected]) == (1, [3, 4, 5, 6])
    assert store.count_events() == 1


def test_skip_invalid_writes_the_valid_rows(store: HistoryStore, tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "e.jsonl",
        [GOOD[0], "oops", GOOD[1], {"user": "u3", "item": "a", "type": "like", "ts": 1}, GOOD[2]],
    )
    report = store.import_events(path, skip_invalid=True)
    assert (report.rows, report.imported) == (5, 3)
    assert [(e.line, e.field) for e in report.rejected] == [(2, None), (4, "type")]
    assert store.count_events() == 3
    assert store.users() == ["u1", "u2"]


def test_import_rejects_rows_in_another_users_conversation(
    store: HistoryStore, tmp_path: Path
) -> None:
    store.log_message("owner", Message(role="user", content="hi", ts=T0), "c1")
    path = write_jsonl(tmp_path / "e.jsonl", GOOD)  # u1 in c1 on line 1
    with pytest.raises(EventFileError, match=r"e\.jsonl:1: field 'conversation'"):
        store.import_events(path)
    assert store.count_events() == 0 and store.users() == ["owner"]
    report = store.import_events(path, skip_invalid=True)
    assert report.imported == 2
    assert [(e.line, e.field) for e in report.rejected] == [(1, "conversation")]


def test_import_of_an_unsupported_file(store: HistoryStore, tmp_path: Path) -> None:
    path = tmp_path / "e.xlsx"
    path.write_bytes(b"")
    with pytest.raises(EventFileError, match="unsupported extension"):
        store.import_events(path)


# -- concurrency ----------------------------------------------------------------------------


def test_threads_share_one_store(store: HistoryStore) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(25):
                user = f"u{n}"
                store.log_message(user, Message(role="user", content=str(i)), f"c{n}")
                store.log_event(Event(user_id=user, item_id=f"i{i}", type="view"))
                store.log_impressions(user, f"c{n}", [suggestion(f"i{i}")], True)
                store.history(user, limit=5)
                store.suggested_item_ids(f"c{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.count_events() == 150
    assert len(store.users()) == 6
    assert all(len(store.history(f"u{n}").messages) == 25 for n in range(6))


def test_two_stores_on_one_file_see_each_others_writes(db_path: Path) -> None:
    with HistoryStore(db_path) as writer, HistoryStore(db_path) as reader:
        writer.log_event(Event(user_id="u", item_id="a", type="view", ts=T0))
        assert reader.count_events() == 1
        reader.log_event(Event(user_id="u", item_id="b", type="view", ts=at(1)))
        assert [e.item_id for e in writer.history("u").events] == ["a", "b"]


def test_reads_are_not_blocked_by_a_long_write_in_another_thread(store: HistoryStore) -> None:
    store.log_event(Event(user_id="u", item_id="a", type="view", ts=T0))
    inside, release = threading.Event(), threading.Event()

    def slow_batch() -> Iterator[Event]:
        yield Event(user_id="u", item_id="b", type="view", ts=at(1))
        inside.set()
        release.wait(10)
        yield Event(user_id="u", item_id="c", type="view", ts=at(2))

    writer = threading.Thread(target=store.log_events, args=(slow_batch(),))
    writer.start()
    try:
        assert inside.wait(10)
        # The batch is mid-transaction: this thread reads the last committed state at once.
        assert store.count_events() == 1
        assert store.suggested_item_ids("c") == set()
    finally:
        release.set()
        writer.join()
    assert store.count_events() == 3


def test_memory_store_is_shared_between_threads() -> None:
    with HistoryStore(":memory:") as store:
        writer = threading.Thread(
            target=store.log_event, args=(Event(user_id="u", item_id="a", type="view"),)
        )
        writer.start()
        writer.join()
        assert store.count_events() == 1
