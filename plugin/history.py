"""Per-user history: conversation turns, behaviour events and impressions, in SQLite.

One ``HistoryStore`` wraps one SQLite file in WAL mode, so readers (other threads, the CLI, a
second server) are never blocked by a writer. Each thread gets its own connection (a
``:memory:`` store shares one behind a lock). Writes run in ``BEGIN IMMEDIATE`` transactions,
so a batch is all or nothing and concurrent writers queue on SQLite's busy timeout.

Every row carries a ``tenant`` and every read filters on it. Times are stored as integer
microseconds since the Unix epoch (exact, and they sort as time does) and come back as aware
UTC datetimes. A conversation belongs to the user who first logged into it; logging another
user's turn, event or impression into it raises ``ConversationOwnerError``, so that
``forget_user`` can remove a conversation whole without touching anyone else's rows.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from convrec.events import (
    EventFileError,
    EventRowError,
    FileFormat,
    event_problems,
    from_epoch_us,
    load_events,
    to_epoch_us,
)
from convrec.types import Event, EventType, ItemKind, Message, Role, Suggestion, utcnow

__all__ = [
    "SCHEMA_VERSION",
    "Conversation",
    "ConversationOwnerError",
    "HistoryMessage",
    "HistoryStore",
    "ImportReport",
    "Impression",
    "ItemEventEntry",
    "TimelineEntry",
    "TurnEntry",
    "UserHistory",
]


# --------------------------------------------------------------------------------------------
# Boundary types
# --------------------------------------------------------------------------------------------


class HistoryMessage(Message):
    """A stored conversation turn: a ``Message`` that knows its time and conversation."""

    ts: datetime
    conversation_id: str | None = None


class Impression(BaseModel):
    """One suggestion the plugin made: which item, how it ranked, and whether it was shown."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    kind: ItemKind
    score: float
    rank: int = Field(ge=1, description="1-based position in the suggestion list.")
    conversation_id: str | None
    surfaced: bool
    ts: datetime


class Conversation(BaseModel):
    """A conversation and the user it belongs to."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    user_id: str
    tenant: str
    started: datetime = Field(description="Time of its earliest logged turn, event or impression.")


class UserHistory(BaseModel):
    """Everything the store keeps about one user, each list in time order."""

    user_id: str
    tenant: str
    messages: list[HistoryMessage] = Field(default_factory=list)
    events: list[Event] = Field(default_factory=list)
    impressions: list[Impression] = Field(default_factory=list)


class TurnEntry(BaseModel):
    """A conversation turn in a timeline."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["turn"] = "turn"
    ts: datetime
    role: Role
    text: str
    conversation_id: str | None = None


class ItemEventEntry(BaseModel):
    """A behaviour event on an item in a timeline."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["event"] = "event"
    ts: datetime
    item_id: str
    type: EventType
    value: float | None = None
    conversation_id: str | None = None


#: One step of a user's timeline: a turn or an item event (``entry.kind`` tells which).
TimelineEntry = Annotated[TurnEntry | ItemEventEntry, Field(discriminator="kind")]


class ImportReport(BaseModel):
    """What ``HistoryStore.import_events`` did with a file."""

    path: str
    format: FileFormat
    tenant: str
    rows: int = Field(description="Data rows in the file (blank lines excluded).")
    imported: int = Field(description="Events written.")
    rejected: list[EventRowError] = Field(
        default_factory=list, description="Rows left out (only with skip_invalid)."
    )


class ConversationOwnerError(ValueError):
    """A turn, event or impression names a conversation that belongs to another user."""


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------

_ROLES = "('user', 'assistant', 'system', 'tool')"
_TYPES = "('view', 'click', 'add_to_cart', 'purchase', 'read', 'rate', 'dismiss', 'search')"

#: ``_MIGRATIONS[i]`` takes a database from ``user_version`` i to i + 1. Append, never edit.
_MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE TABLE users (
        tenant      TEXT NOT NULL,
        user_id     TEXT NOT NULL,
        created_us  INTEGER NOT NULL,
        PRIMARY KEY (tenant, user_id)
    ) WITHOUT ROWID;

    CREATE TABLE conversations (
        tenant           TEXT NOT NULL,
        conversation_id  TEXT NOT NULL,
        user_id          TEXT NOT NULL,
        started_us       INTEGER NOT NULL,
        PRIMARY KEY (tenant, conversation_id),
        FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id) ON DELETE CASCADE
    );
    CREATE INDEX conversations_by_user ON conversations (tenant, user_id);

    CREATE TABLE messages (
        id               INTEGER PRIMARY KEY,
        tenant           TEXT NOT NULL,
        user_id          TEXT NOT NULL,
        conversation_id  TEXT,
        role             TEXT NOT NULL CHECK (role IN {_ROLES}),
        text             TEXT NOT NULL,
        ts_us            INTEGER NOT NULL,
        FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id) ON DELETE CASCADE,
        FOREIGN KEY (tenant, conversation_id)
            REFERENCES conversations (tenant, conversation_id) ON DELETE CASCADE
    );
    CREATE INDEX messages_by_user ON messages (tenant, user_id, ts_us);
    CREATE INDEX messages_by_conversation ON messages (tenant, conversation_id, ts_us);

    CREATE TABLE events (
        id               INTEGER PRIMARY KEY,
        tenant           TEXT NOT NULL,
        user_id          TEXT NOT NULL,
        item_id          TEXT,
        type             TEXT NOT NULL CHECK (type IN {_TYPES}),
        value            REAL,
        text             TEXT,
        ts_us            INTEGER NOT NULL,
        conversation_id  TEXT,
        FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id) ON DELETE CASCADE,
        FOREIGN KEY (tenant, conversation_id)
            REFERENCES conversations (tenant, conversation_id) ON DELETE CASCADE
    );
    CREATE INDEX events_by_user ON events (tenant, user_id, ts_us);
    CREATE INDEX events_by_item ON events (tenant, item_id);
    CREATE INDEX events_by_conversation ON events (tenant, conversation_id);

    CREATE TABLE impressions (
        id               INTEGER PRIMARY KEY,
        tenant           TEXT NOT NULL,
        user_id          TEXT NOT NULL,
        conversation_id  TEXT,
        item_id          TEXT NOT NULL,
        kind             TEXT NOT NULL,
        score            REAL NOT NULL,
        rank             INTEGER NOT NULL CHECK (rank >= 1),
        surfaced         INTEGER NOT NULL CHECK (surfaced IN (0, 1)),
        ts_us            INTEGER NOT NULL,
        FOREIGN KEY (tenant, user_id) REFERENCES users (tenant, user_id) ON DELETE CASCADE,
        FOREIGN KEY (tenant, conversation_id)
            REFERENCES conversations (tenant, conversation_id) ON DELETE CASCADE
    );
    CREATE INDEX impressions_by_user ON impressions (tenant, user_id, ts_us);
    CREATE INDEX impressions_by_conversation ON impressions (tenant, conversation_id);
    """,
)

#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = len(_MIGRATIONS)

#: Tables holding per-user rows, children first: the order ``forget_user`` deletes in.
_USER_TABLES: tuple[str, ...] = ("impressions", "events", "messages", "conversations", "users")

_NO_LIMIT = -1  # SQLite's LIMIT for "all rows"

_SqlRow = tuple[Any, ...]


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class HistoryStore:
    """Users' conversations, behaviour events and impressions in one SQLite file.

    Open it on a path (created with its parent folders if missing) or ``":memory:"``; use it
    as a context manager or call ``close()``. Safe to share between threads.
    """

    def __init__(self, path: str | PathLike[str], *, timeout: float = 10.0) -> None:
        """Open (and create or migrate) the store at ``path``.

        ``timeout`` is how long a write waits, in seconds, for another connection's write lock.
        Raises ``RuntimeError`` if the file was written by a newer version of this schema.
        """
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._connections = _Connections(self.path, timeout)
        try:
            self._migrate()
        except BaseException:
            self._connections.close()
            raise

    # -- lifecycle ---------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path} has history schema version {version}; this convrec reads up to "
                f"{SCHEMA_VERSION}. Upgrade convrec."
            )
        if version == SCHEMA_VERSION:
            return
        with self._write() as conn:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for target, script in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {target}")

    @property
    def schema_version(self) -> int:
        """The schema version of the open file (``PRAGMA user_version``)."""
        with self._read() as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode for this store: ``wal`` for files, ``memory`` for ``:memory:``."""
        with self._read() as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0])

    def close(self) -> None:
        """Close every connection; further calls raise ``sqlite3.ProgrammingError``.

        Idempotent. Call it once no other thread is using the store.
        """
        self._connections.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HistoryStore({self.path!r})"

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._connections.use()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed if the block finishes, rolled back if it raises."""
        with self._connections.use() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------

    def log_message(
        self,
        user_id: str,
        message: Message,
        conversation_id: str | None = None,
        tenant: str = "default",
    ) -> None:
        """Record one conversation turn; a message without ``ts`` is stamped now."""
        _require("user_id", user_id)
        _require("tenant", tenant)
        _require_optional("conversation_id", conversation_id)
        ts_us = to_epoch_us(message.ts or utcnow())
        with self._write() as conn:
            writer = _Writer(conn, tenant)
            writer.claim(user_id, conversation_id, ts_us)
            conn.execute(
                "INSERT INTO messages (tenant, user_id, conversation_id, role, text, ts_us)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, user_id, conversation_id, message.role, message.content, ts_us),
            )

    def log_event(self, event: Event) -> None:
        """Record one behaviour event (its tenant is ``event.tenant``).

        Raises ``ValueError`` for an event the rules of ``event_problems`` reject (an item
        event with no item, a search with no text, a rating with no value).
        """
        self.log_events([event])

    def log_events(self, events: Iterable[Event]) -> int:
        """Record many events in one transaction (all or nothing); answers how many."""
        count = 0
        with self._write() as conn:
            writers: dict[str, _Writer] = {}
            for event in events:
                _check_event(event)
                writer = writers.get(event.tenant)
                if writer is None:
                    writer = writers[event.tenant] = _Writer(conn, event.tenant)
                writer.insert_event(event)
                count += 1
        return count

    def log_impressions(
        self,
        user_id: str,
        conversation_id: str | None,
        suggestions: Sequence[Suggestion],
        surfaced: bool,
        tenant: str = "default",
        *,
        ts: datetime | None = None,
    ) -> None:
        """Record what was suggested, in rank order, and whether it was shown to the user.

        ``ts`` defaults to now; pass it to replay past sessions.
        """
        _require("user_id", user_id)
        _require("tenant", tenant)
        _require_optional("conversation_id", conversation_id)
        if not suggestions:
            return
        ts_us = to_epoch_us(ts or utcnow())
        with self._write() as conn:
            _Writer(conn, tenant).claim(user_id, conversation_id, ts_us)
            conn.executemany(
                "INSERT INTO impressions (tenant, user_id, conversation_id, item_id, kind, score,"
                " rank, surfaced, ts_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (tenant, user_id, conversation_id, s.id, s.kind, s.score, rank, surfaced, ts_us)
                    for rank, s in enumerate(suggestions, start=1)
                ],
            )

    def import_events(
        self,
        path: str | PathLike[str],
        known_item_ids: AbstractSet[str] | None = None,
        skip_invalid: bool = False,
        tenant: str = "default",
    ) -> ImportReport:
        """Import a JSONL or CSV event file (see ``convrec.events``) into ``tenant``.

        Without ``skip_invalid`` a file with any bad row raises ``EventFileError`` and nothing
        of it is written. With it, the valid rows are written and the others are listed, with
        their line numbers, in the report. Rows naming a conversation that belongs to another
        user count as invalid (field ``conversation``).
        """
        _require("tenant", tenant)
        loaded = load_events(
            Path(path), known_item_ids=known_item_ids, skip_invalid=skip_invalid, tenant=tenant
        )
        rejected = list(loaded.errors)
        imported = 0
        with self._write() as conn:
            writer = _Writer(conn, tenant)
            conflicts: list[EventRowError] = []
            for line, event in zip(loaded.lines, loaded.events, strict=True):
                try:
                    writer.insert_event(event)
                except ConversationOwnerError as exc:
                    conflicts.append(
                        EventRowError(
                            path=loaded.path, line=line, field="conversation", message=str(exc)
                        )
                    )
                else:
                    imported += 1
            if conflicts and not skip_invalid:
                raise EventFileError(loaded.path, conflicts, rows=loaded.rows)  # rolls back
        rejected.extend(conflicts)
        rejected.sort(key=lambda e: e.line or 0)
        return ImportReport(
            path=loaded.path,
            format=loaded.format,
            tenant=tenant,
            rows=loaded.rows,
            imported=imported,
            rejected=rejected,
        )

    def forget_user(self, user_id: str, tenant: str = "default") -> int:
        """Delete everything about a user in ``tenant``; answers the number of rows deleted.

        Counts rows of every table (the user row and conversations included). Deleted pages are
        overwritten (``secure_delete``) and the WAL is checkpointed afterwards, best effort,
        so the data does not linger in the file.
        """
        _require("user_id", user_id)
        _require("tenant", tenant)
        deleted = 0
        with self._write() as conn:
            for table in _USER_TABLES:
                cursor = conn.execute(
                    f"DELETE FROM {table} WHERE tenant = ? AND user_id = ?", (tenant, user_id)
                )
                deleted += cursor.rowcount
        if deleted:
            with self._read() as conn:
                # Answers "busy" rather than waiting while others read; a later checkpoint will do.
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return deleted

    # -- reading -----------------------------------------------------------------------------

    def suggested_item_ids(
        self, conversation_id: str, tenant: str = "default", *, include_unsurfaced: bool = False
    ) -> set[str]:
        """Items already shown to the user in this conversation.

        Impressions logged with ``surfaced=False`` were never seen, so they do not count unless
        ``include_unsurfaced``.
        """
        sql = "SELECT DISTINCT item_id FROM impressions WHERE tenant = ? AND conversation_id = ?"
        if not include_unsurfaced:
            sql += " AND surfaced = 1"
        with self._read() as conn:
            return {row[0] for row in conn.execute(sql, (tenant, conversation_id))}

    def dismissed_item_ids(self, user_id: str, tenant: str = "default") -> set[str]:
        """Items the user has dismissed (a ``dismiss`` event), ever."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT DISTINCT item_id FROM events WHERE tenant = ? AND user_id = ?"
                " AND type = 'dismiss' AND item_id IS NOT NULL",
                (tenant, user_id),
            )
            return {row[0] for row in rows}

    def history(
        self, user_id: str, tenant: str = "default", limit: int | None = None
    ) -> UserHistory:
        """A user's messages, events and impressions, each oldest first.

        ``limit`` keeps the most recent ``limit`` of each list.
        """
        n = _limit(limit)
        with self._read() as conn:
            messages = [
                _message(row)
                for row in _latest(
                    conn,
                    "SELECT role, text, ts_us, conversation_id, id FROM messages"
                    " WHERE tenant = ? AND user_id = ?",
                    (tenant, user_id),
                    n,
                )
            ]
            events = [
                _event(row, user_id, tenant)
                for row in _latest(
                    conn,
                    "SELECT item_id, type, value, text, ts_us, conversation_id, id FROM events"
                    " WHERE tenant = ? AND user_id = ?",
                    (tenant, user_id),
                    n,
                )
            ]
            impressions = [
                _impression(row)
                for row in _latest(
                    conn,
                    "SELECT item_id, kind, score, rank, conversation_id, surfaced, ts_us, id"
                    " FROM impressions WHERE tenant = ? AND user_id = ?",
                    (tenant, user_id),
                    n,
                )
            ]
        return UserHistory(
            user_id=user_id,
            tenant=tenant,
            messages=messages,
            events=events,
            impressions=impressions,
        )

    def timeline(
        self, user_id: str, tenant: str = "default", limit: int | None = None
    ) -> list[TimelineEntry]:
        """Turns and item events merged in time order, oldest first: the sequence model's input.

        ``limit`` keeps the most recent ``limit`` entries. Events without an item (searches)
        are left out; they are in ``history().events``. At equal times a turn comes before an
        event, and rows of one kind keep the order they were logged in.
        """
        sql = """
            SELECT ts_us, 0 AS source, id, role, text, NULL, NULL, NULL, conversation_id
              FROM messages WHERE tenant = ? AND user_id = ?
            UNION ALL
            SELECT ts_us, 1 AS source, id, NULL, NULL, item_id, type, value, conversation_id
              FROM events WHERE tenant = ? AND user_id = ? AND item_id IS NOT NULL
            ORDER BY ts_us DESC, source DESC, id DESC
            LIMIT ?
        """
        with self._read() as conn:
            rows = conn.execute(sql, (tenant, user_id, tenant, user_id, _limit(limit))).fetchall()
        entries: list[TimelineEntry] = []
        for ts_us, source, _id, role, text, item_id, kind, value, conversation_id in reversed(rows):
            ts = from_epoch_us(ts_us)
            if source == 0:
                entries.append(
                    TurnEntry(ts=ts, role=role, text=text, conversation_id=conversation_id)
                )
            else:
                entries.append(
                    ItemEventEntry(
                        ts=ts,
                        item_id=item_id,
                        type=kind,
                        value=value,
                        conversation_id=conversation_id,
                    )
                )
        return entries

    def conversation_messages(
        self, conversation_id: str, tenant: str = "default", limit: int | None = None
    ) -> list[HistoryMessage]:
        """The turns of one conversation, oldest first (the most recent ``limit`` of them)."""
        with self._read() as conn:
            rows = _latest(
                conn,
                "SELECT role, text, ts_us, conversation_id, id FROM messages"
                " WHERE tenant = ? AND conversation_id = ?",
                (tenant, conversation_id),
                _limit(limit),
            )
            return [_message(row) for row in rows]

    def conversations(self, user_id: str, tenant: str = "default") -> list[Conversation]:
        """A user's conversations, oldest first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT conversation_id, started_us FROM conversations"
                " WHERE tenant = ? AND user_id = ? ORDER BY started_us, conversation_id",
                (tenant, user_id),
            ).fetchall()
        return [
            Conversation(
                conversation_id=cid, user_id=user_id, tenant=tenant, started=from_epoch_us(us)
            )
            for cid, us in rows
        ]

    def users(self, tenant: str = "default") -> list[str]:
        """Ids of the users with anything stored in ``tenant``, sorted."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT user_id FROM users WHERE tenant = ? ORDER BY user_id", (tenant,)
            )
            return [row[0] for row in rows]

    def tenants(self) -> list[str]:
        """Tenants with at least one user, sorted."""
        with self._read() as conn:
            return [row[0] for row in conn.execute("SELECT DISTINCT tenant FROM users ORDER BY 1")]

    def count_events(
        self,
        user_id: str | None = None,
        tenant: str = "default",
        type: EventType | None = None,
    ) -> int:
        """Number of events in ``tenant``, optionally of one user and/or one type."""
        sql = "SELECT count(*) FROM events WHERE tenant = ?"
        params: list[str] = [tenant]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if type is not None:
            sql += " AND type = ?"
            params.append(type)
        with self._read() as conn:
            return int(conn.execute(sql, params).fetchone()[0])


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class _Handle:
    """Holds one thread's connection; when the thread ends its locals (and this) are dropped,
    which closes the connection. ``sqlite3.Connection`` cannot be weakly referenced; this can."""

    __slots__ = ("__weakref__", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class _Connections:
    """The store's SQLite connections: one per thread for a file, one shared for ``:memory:``.

    ``sqlite3`` connections must not be used by two threads at once. Per-thread connections to
    a WAL file let readers run while another thread holds a long write transaction (an
    import); SQLite's busy timeout serialises writers. A ``:memory:`` database exists only in
    its one connection, so there every use takes a lock instead.
    """

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._lock = threading.RLock()
        self._closed = False
        self._local = threading.local()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._shared = self._open() if path == ":memory:" else None
        if self._shared is None:
            self._thread_connection()  # fail now, in the caller's thread, if the file is bad

    def _open(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; HistoryStore._write() begins them.
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA journal_mode = WAL")  # persistent, but cheap to repeat
            conn.execute("PRAGMA foreign_keys = ON")
            # NORMAL is safe against application crashes in WAL mode and much faster than FULL.
            conn.execute("PRAGMA synchronous = NORMAL")
            # Deleted rows are overwritten, so forget_user leaves nothing in free pages.
            conn.execute("PRAGMA secure_delete = ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            with self._lock:
                if self._closed:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed HistoryStore.")
                handle = _Handle(self._open())
                self._handles.add(handle)
            self._local.handle = handle
        return handle.conn

    @contextmanager
    def use(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection (the shared one, under the lock, for ``:memory:``)."""
        if self._shared is not None:
            with self._lock:
                yield self._shared
        else:
            yield self._thread_connection()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._shared is not None:
                self._shared.close()
            for handle in list(self._handles):
                handle.conn.close()


class _Writer:
    """Inserts rows for one tenant inside an open transaction, creating users and
    conversations as they first appear and enforcing that a conversation has one user."""

    def __init__(self, conn: sqlite3.Connection, tenant: str) -> None:
        _require("tenant", tenant)
        self.conn = conn
        self.tenant = tenant
        self._users: set[str] = set()
        # conversation id -> (owner, earliest start written in this transaction)
        self._conversations: dict[str, tuple[str, int]] = {}

    def claim(self, user_id: str, conversation_id: str | None, ts_us: int) -> None:
        """Make sure the user exists and, if given, the conversation exists and is theirs.

        Checks ownership before writing anything, so a refused row leaves no trace. Remembers
        what it wrote, so a bulk import costs one statement per new user or conversation.
        """
        known = self._conversations.get(conversation_id) if conversation_id else None
        if conversation_id is not None:
            owner = known[0] if known else self._owner(conversation_id)
            if owner is not None and owner != user_id:
                raise ConversationOwnerError(
                    f"conversation {conversation_id!r} belongs to another user"
                )
        if user_id not in self._users:
            self.conn.execute(
                "INSERT INTO users (tenant, user_id, created_us) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (self.tenant, user_id, to_epoch_us(utcnow())),
            )
            self._users.add(user_id)
        if conversation_id is not None and (known is None or ts_us < known[1]):
            self.conn.execute(
                "INSERT INTO conversations (tenant, conversation_id, user_id, started_us)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE"
                " SET started_us = min(started_us, excluded.started_us)",
                (self.tenant, conversation_id, user_id, ts_us),
            )
            self._conversations[conversation_id] = (user_id, ts_us)

    def _owner(self, conversation_id: str) -> str | None:
        row = self.conn.execute(
            "SELECT user_id FROM conversations WHERE tenant = ? AND conversation_id = ?",
            (self.tenant, conversation_id),
        ).fetchone()
        return None if row is None else str(row[0])

    def insert_event(self, event: Event) -> None:
        ts_us = to_epoch_us(event.ts)
        self.claim(event.user_id, event.conversation_id, ts_us)
        self.conn.execute(
            "INSERT INTO events (tenant, user_id, item_id, type, value, text, ts_us,"
            " conversation_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.tenant,
                event.user_id,
                event.item_id,
                event.type,
                event.value,
                event.text,
                ts_us,
                event.conversation_id,
            ),
        )


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (``executescript`` would COMMIT first)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _require(name: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")


def _require_optional(name: str, value: str | None) -> None:
    if value is not None:
        _require(name, value)


def _check_event(event: Event) -> None:
    _require("tenant", event.tenant)
    _require_optional("conversation_id", event.conversation_id)
    problems = event_problems(event)
    if problems:
        detail = "; ".join(f"field '{field}': {message}" for field, message in problems)
        raise ValueError(f"invalid {event.type} event of user {event.user_id!r}: {detail}")


def _limit(limit: int | None) -> int:
    if limit is None:
        return _NO_LIMIT
    if limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    return limit


def _latest(
    conn: sqlite3.Connection, select: str, params: tuple[str, ...], limit: int
) -> list[_SqlRow]:
    """The most recent ``limit`` rows of ``select`` (which has ``ts_us`` and ``id`` columns),
    oldest first; ties in time keep the order rows were written in."""
    sql = f"SELECT * FROM ({select} ORDER BY ts_us DESC, id DESC LIMIT ?) ORDER BY ts_us, id"
    return conn.execute(sql, (*params, limit)).fetchall()


def _message(row: _SqlRow) -> HistoryMessage:
    role, text, ts_us, conversation_id, _id = row
    return HistoryMessage(
        role=role, content=text, ts=from_epoch_us(ts_us), conversation_id=conversation_id
    )


def _event(row: _SqlRow, user_id: str, tenant: str) -> Event:
    item_id, kind, value, text, ts_us, conversation_id, _id = row
    return Event(
        user_id=user_id,
        item_id=item_id,
        type=kind,
        ts=from_epoch_us(ts_us),
        value=value,
        text=text,
        tenant=tenant,
        conversation_id=conversation_id,
    )


def _impression(row: _SqlRow) -> Impression:
    item_id, kind, score, rank, conversation_id, surfaced, ts_us, _id = row
    return Impression(
        item_id=item_id,
        kind=kind,
        score=score,
        rank=rank,
        conversation_id=conversation_id,
        surfaced=bool(surfaced),
        ts=from_epoch_us(ts_us),
    )
