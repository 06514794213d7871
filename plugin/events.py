"""Reading behaviour-event files (JSONL or CSV) into validated ``Event`` objects.

A file is read whole and every row is checked; problems are collected, not raised, so a caller
sees all of them at once with the file's own line numbers (``FILE:LINE: field 'x': message``).
``read_events`` answers the good rows and the errors; ``load_events`` is the strict wrapper
that raises ``EventFileError`` unless told to skip invalid rows.

Row keys (CSV header names or JSON object keys, case-insensitive):

==============  =========================================  ===========================
key             aliases                                    notes
==============  =========================================  ===========================
``user``        ``user_id``                                required
``item``        ``item_id``                                may be empty only for search
``type``                                                   one of ``EVENT_TYPES`` (+ turns)
``ts``          ``time``, ``timestamp``                    Unix seconds or ISO 8601
``value``                                                  number; optional (a rating)
``text``                                                   required for search
``conversation``  ``conversation_id``                      optional
==============  =========================================  ===========================

With ``turns=True`` (what ``convrec train`` reads) a row may also be a conversation turn:
``type`` ``user_turn`` or ``assistant_turn``, with ``text`` and no ``item``.

Other keys are rejected rather than ignored, so a misspelt column (``valeu``) cannot silently
drop data. The tenant is not a column: an import writes into the one tenant it is given.

Timestamps keep microsecond precision end to end: JSON numbers are parsed as ``Decimal`` and
numeric strings never pass through ``float``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Literal, NamedTuple, cast

from pydantic import BaseModel, ConfigDict, Field

from convrec.types import EVENT_TYPES, Event, EventType

__all__ = [
    "TURN_TYPES",
    "EventFileError",
    "EventFileResult",
    "EventRowError",
    "FileFormat",
    "event_problems",
    "file_format",
    "from_epoch_us",
    "load_events",
    "parse_timestamp",
    "read_events",
    "to_epoch_us",
    "TurnRecord",
]

#: Row types that are conversation turns (read with ``turns=True``), and the role of each.
TURN_TYPES: dict[str, Literal["user", "assistant"]] = {
    "user_turn": "user",
    "assistant_turn": "assistant",
}

FileFormat = Literal["jsonl", "csv"]

#: File extensions (lower case) and the format each one is read as.
EXTENSIONS: dict[str, FileFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}

#: Accepted row keys and the canonical field each one fills.
KEY_ALIASES: dict[str, str] = {
    "user": "user",
    "user_id": "user",
    "item": "item",
    "item_id": "item",
    "type": "type",
    "ts": "ts",
    "time": "ts",
    "timestamp": "ts",
    "value": "value",
    "text": "text",
    "conversation": "conversation",
    "conversation_id": "conversation",
}

#: Canonical fields a CSV header must name (``item`` may be absent in a search-only file).
REQUIRED_COLUMNS: tuple[str, ...] = ("user", "type", "ts")

#: How many problems an ``EventFileError`` message lists before "and N more".
MAX_LISTED_ERRORS = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
#: Beyond this many seconds a datetime cannot represent the instant (year 9999 is ~2.5e11).
_MAX_ABS_SECONDS = Decimal(10) ** 12
_MILLISECONDS_HINT = Decimal(10) ** 15


# --------------------------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------------------------


class EventRowError(BaseModel):
    """One problem in an event file: where it is, which field, and what is wrong.

    ``field`` is the key as the file spells it (``user_id`` if the file says ``user_id``), or
    ``None`` for a problem with the whole row (malformed JSON, wrong number of CSV fields).
    """

    model_config = ConfigDict(frozen=True)

    path: str
    line: int | None = Field(
        default=None, ge=1, description="Physical line number, 1-based; None for the whole file."
    )
    field: str | None = None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        if self.field is None:
            return f"{where}: {self.message}"
        return f"{where}: field '{self.field}': {self.message}"


class TurnRecord(BaseModel):
    """A conversation turn read from an events file (``turns=True``)."""

    user_id: str
    role: Literal["user", "assistant"]
    text: str
    ts: datetime
    conversation_id: str | None = None


class EventFileResult(BaseModel):
    """What reading an event file found: the valid events and turns, and the rejected rows.

    ``lines[i]`` is the line ``events[i]`` was read from (``turn_lines`` likewise for
    ``turns``); ``rows`` counts every data row seen (valid or not, blank lines excluded).
    """

    path: str
    format: FileFormat
    events: list[Event] = Field(default_factory=list)
    lines: list[int] = Field(default_factory=list)
    turns: list[TurnRecord] = Field(default_factory=list)
    turn_lines: list[int] = Field(default_factory=list)
    errors: list[EventRowError] = Field(default_factory=list)
    rows: int = 0

    @property
    def ok(self) -> bool:
        """True when no row was rejected."""
        return not self.errors


class EventFileError(ValueError):
    """An event file (or some of its rows) could not be read.

    The message names every problem as ``FILE:LINE: field 'x': message``, capped at
    ``MAX_LISTED_ERRORS`` lines; ``errors`` holds all of them.
    """

    def __init__(self, path: str, errors: Iterable[EventRowError], rows: int | None = None):
        self.path = path
        self.errors: list[EventRowError] = list(errors)
        self.rows = rows
        super().__init__(_describe(path, self.errors, rows))


def _describe(path: str, errors: list[EventRowError], rows: int | None) -> str:
    count = len({e.line for e in errors if e.line is not None})
    if count:
        of = f" (of {rows})" if rows else ""
        head = f"{path}: {count} invalid row{'s' if count != 1 else ''}{of}"
    else:
        head = f"{path}: cannot read events"
    listed = [f"  {e}" for e in errors[:MAX_LISTED_ERRORS]]
    if len(errors) > MAX_LISTED_ERRORS:
        listed.append(f"  ... and {len(errors) - MAX_LISTED_ERRORS} more")
    return "\n".join([head, *listed])


# --------------------------------------------------------------------------------------------
# Timestamps
# --------------------------------------------------------------------------------------------


def parse_timestamp(value: object) -> datetime:
    """The UTC instant a file's ``ts`` cell stands for.

    Accepts Unix seconds (int, float, ``Decimal`` or a numeric string, fractions kept to the
    microsecond), ISO 8601 text (``2024-05-01T12:00:00Z``, ``+02:00`` offsets, a bare date) and
    ``datetime``. A time with no offset is UTC. Always answers an aware datetime in UTC.

    Raises ``ValueError`` with a message fit for an error report.
    """
    if isinstance(value, bool):
        raise ValueError("must be Unix seconds or an ISO 8601 time, not a boolean")
    if isinstance(value, datetime):
        return _as_utc(value)
    if isinstance(value, int):
        return _from_seconds(Decimal(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"must be a finite number of seconds, got {value}")
        # repr() is the shortest text that reads back as this float: what the file said.
        return _from_seconds(Decimal(repr(value)))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"must be a finite number of seconds, got {value}")
        return _from_seconds(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("is empty")
        if _NUMBER.match(text):
            return _from_seconds(Decimal(text))
        return _from_iso(text)
    raise ValueError(f"must be Unix seconds or an ISO 8601 time, not {type(value).__name__}")


def _from_seconds(seconds: Decimal) -> datetime:
    if abs(seconds) >= _MAX_ABS_SECONDS:
        hint = " (milliseconds? ts is in seconds)" if abs(seconds) < _MILLISECONDS_HINT else ""
        raise ValueError(f"{seconds} seconds is out of range{hint}")
    try:
        micros = int((seconds * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        return _EPOCH + timedelta(microseconds=micros)
    except (OverflowError, InvalidOperation) as exc:
        raise ValueError(f"{seconds} seconds is out of range") from exc


def _from_iso(text: str) -> datetime:
    candidate = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        raise ValueError(
            f"'{text}' is neither Unix seconds nor an ISO 8601 time "
            "(e.g. 1714564800 or 2024-05-01T12:00:00Z)"
        ) from None
    try:
        return _as_utc(parsed)
    except OverflowError:
        raise ValueError(f"'{text}' is out of range in UTC") from None


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_epoch_us(value: datetime) -> int:
    """Microseconds since the Unix epoch; a naive datetime is taken as UTC.

    Integer microseconds are what the history store keeps: exact, and they sort as time does.
    """
    return (_as_utc(value) - _EPOCH) // _MICROSECOND


def from_epoch_us(micros: int) -> datetime:
    """The aware UTC datetime for microseconds since the Unix epoch."""
    return _EPOCH + timedelta(microseconds=micros)


# --------------------------------------------------------------------------------------------
# Event invariants
# --------------------------------------------------------------------------------------------


def event_problems(event: Event) -> list[tuple[str, str]]:
    """What makes an otherwise well-typed ``Event`` unusable, as ``(field, message)`` pairs.

    ``Event`` allows any combination of optional fields; behaviour data needs more: every type
    but ``search`` names an item and a ``search`` has text. A ``rate`` may come without its
    value (data sets such as MovieLens in SASRec's form keep only that a rating happened). The
    reader and the history store both apply these rules.
    """
    problems = _type_rules(event.type, event.item_id, event.text)
    if event.value is not None and not math.isfinite(event.value):
        problems.append(("value", f"must be a finite number, got {event.value}"))
    return problems


def _type_rules(kind: str, item_id: str | None, text: str | None) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if kind != "search" and not item_id:
        problems.append(("item", f"is required for type '{kind}' (only 'search' may omit it)"))
    if kind == "search" and not (text and text.strip()):
        problems.append(("text", "is required for type 'search'"))
    return problems


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


def file_format(path: str | Path) -> FileFormat:
    """The format a file is read as, from its extension; ``EventFileError`` for others."""
    suffix = Path(path).suffix.lower()
    try:
        return EXTENSIONS[suffix]
    except KeyError:
        allowed = ", ".join(EXTENSIONS)
        raise EventFileError(
            str(path),
            [
                EventRowError(
                    path=str(path),
                    message=f"unsupported extension '{suffix or '(none)'}'; "
                    f"expected one of {allowed}",
                )
            ],
        ) from None


def read_events(
    path: str | Path,
    known_item_ids: AbstractSet[str] | None = None,
    tenant: str = "default",
    *,
    turns: bool = False,
) -> EventFileResult:
    """Read every row of an event file, keeping the valid events and listing the bad rows.

    ``known_item_ids``, when given, rejects rows whose item is not in it. With ``turns``, rows
    typed ``user_turn``/``assistant_turn`` are read as ``TurnRecord``s (else rejected). Raises
    ``EventFileError`` only for an unsupported extension and ``OSError`` if the file cannot be
    opened; everything about the content is reported in ``errors``.
    """
    name = str(path)
    fmt = file_format(path)
    result = EventFileResult(path=name, format=fmt)
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        result.errors.append(
            EventRowError(path=name, line=line, message=f"is not UTF-8 text: {exc.reason}")
        )
        return result
    sources = _jsonl_rows(name, text) if fmt == "jsonl" else _csv_rows(name, text)
    for source in sources:
        if source.line is None:  # a problem with the file, not a data row
            result.errors.extend(source.errors)
            continue
        result.rows += 1
        problems = list(source.errors)
        event = None
        if source.row is not None:
            event, row_problems = _row_to_event(
                name, source.line, source.row, known_item_ids, tenant, turns
            )
            problems.extend(row_problems)
        if problems or event is None:
            result.errors.extend(problems)
        elif isinstance(event, TurnRecord):
            result.turns.append(event)
            result.turn_lines.append(source.line)
        else:
            result.events.append(event)
            result.lines.append(source.line)
    return result


def load_events(
    path: str | Path,
    known_item_ids: AbstractSet[str] | None = None,
    skip_invalid: bool = False,
    tenant: str = "default",
    *,
    turns: bool = False,
) -> EventFileResult:
    """``read_events``, raising ``EventFileError`` if any row is invalid unless ``skip_invalid``.

    With ``skip_invalid`` the result holds the valid events and the rejected rows' errors.
    """
    result = read_events(path, known_item_ids=known_item_ids, tenant=tenant, turns=turns)
    if result.errors and not skip_invalid:
        raise EventFileError(result.path, result.errors, rows=result.rows)
    return result


# A source row: canonical field -> (key as the file spells it, raw value). Raw values are JSON
# values for JSONL and strings for CSV.
_Row = dict[str, tuple[str, object]]


class _Source(NamedTuple):
    """One data row of a file (``line`` set) or a file-level problem (``line`` None)."""

    line: int | None
    row: _Row | None
    errors: list[EventRowError]


def _jsonl_rows(name: str, text: str) -> Iterable[_Source]:
    # Split on "\n" only: str.splitlines() also breaks on U+2028 and friends, which JSON
    # strings may contain raw, and would make line numbers disagree with editors.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_float=Decimal, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError) as exc:
            hint = ""
            if number == 1 and line.lstrip().startswith("["):
                hint = " (a JSON array? write one object per line)"
            message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            error = EventRowError(
                path=name, line=number, message=f"malformed JSON: {message}{hint}"
            )
            yield _Source(number, None, [error])
            continue
        if not isinstance(obj, dict):
            message = f"expected a JSON object, got {type(obj).__name__}"
            if isinstance(obj, list):
                message += " (a JSON array? write one object per line)"
            yield _Source(number, None, [EventRowError(path=name, line=number, message=message)])
            continue
        # Unknown keys are reported along with whatever else is wrong with the row.
        row, problems = _canonical_keys(name, number, obj)
        yield _Source(number, row, problems)


def _reject_constant(token: str) -> object:
    raise ValueError(f"{token} is not a valid number")


def _canonical_keys(
    name: str, line: int, obj: Mapping[str, object]
) -> tuple[_Row, list[EventRowError]]:
    row: _Row = {}
    problems: list[EventRowError] = []
    for key, value in obj.items():
        canonical = KEY_ALIASES.get(key.strip().lower())
        if canonical is None:
            problems.append(
                EventRowError(path=name, line=line, field=key, message=_unknown_key_message())
            )
        elif canonical in row:
            problems.append(
                EventRowError(
                    path=name,
                    line=line,
                    field=key,
                    message=f"given twice (also as '{row[canonical][0]}')",
                )
            )
        else:
            row[canonical] = (key, value)
    return row, problems


def _unknown_key_message() -> str:
    return "is not a known key; expected " + ", ".join(KEY_ALIASES)


def _csv_rows(name: str, text: str) -> Iterable[_Source]:
    reader = csv.reader(io.StringIO(text, newline=""))
    header: list[tuple[str, str | None]] | None = None  # (name as written, canonical)
    header_line = 0
    while True:
        start = reader.line_num + 1  # a quoted cell may span lines; report where the row starts
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            error = EventRowError(path=name, line=start, message=f"malformed CSV: {exc}")
            yield _Source(None, None, [error])
            return
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header_line = start
            header, problems = _csv_header(name, start, cells)
            if problems:  # without a usable header no row can be read
                yield _Source(None, None, problems)
                return
            continue
        if len(cells) != len(header):
            message = (
                f"has {len(cells)} fields but the header (line {header_line}) has {len(header)}"
            )
            yield _Source(start, None, [EventRowError(path=name, line=start, message=message)])
            continue
        row: _Row = {}
        for (written, canonical), cell in zip(header, cells, strict=True):
            if canonical is not None:
                row[canonical] = (written, cell)
        yield _Source(start, row, [])


def _csv_header(
    name: str, line: int, cells: list[str]
) -> tuple[list[tuple[str, str | None]], list[EventRowError]]:
    row, problems = _canonical_keys(name, line, {cell: None for cell in cells})
    if len(set(cells)) != len(cells):
        dupes = sorted({c for c in cells if cells.count(c) > 1})
        problems.extend(
            EventRowError(path=name, line=line, field=d, message="appears twice in the header")
            for d in dupes
        )
    for required in REQUIRED_COLUMNS:
        if required not in row:
            aliases = [k for k, v in KEY_ALIASES.items() if v == required]
            problems.append(
                EventRowError(
                    path=name,
                    line=line,
                    field=required,
                    message="column is missing from the header (accepted names: "
                    + ", ".join(aliases)
                    + ")",
                )
            )
    header = [(cell, KEY_ALIASES.get(cell.strip().lower())) for cell in cells]
    return header, problems


def _row_to_event(
    name: str,
    line: int,
    row: _Row,
    known_item_ids: AbstractSet[str] | None,
    tenant: str,
    turns: bool = False,
) -> tuple[Event | TurnRecord | None, list[EventRowError]]:
    """The event (or, with ``turns``, the turn) a row stands for, or every problem in it."""
    errors: list[EventRowError] = []

    def fail(canonical: str, message: str) -> None:
        errors.append(
            EventRowError(path=name, line=line, field=_key(row, canonical), message=message)
        )

    def get(canonical: str) -> object:
        value = row.get(canonical, (canonical, None))[1]
        if isinstance(value, str) and not value.strip():
            return None
        return value

    user_id = _identifier(get("user"))
    if user_id is None:
        raw = get("user")
        fail("user", "is required" if raw is None else f"must be a string, not {_kind(raw)}")

    kind: EventType | None = None
    role: Literal["user", "assistant"] | None = None
    expected = ", ".join([*EVENT_TYPES, *TURN_TYPES] if turns else EVENT_TYPES)
    raw = get("type")
    spelled = raw.strip().lower() if isinstance(raw, str) else None
    if raw is None:
        fail("type", "is required; expected one of " + expected)
    elif spelled in TURN_TYPES:
        if turns:
            role = TURN_TYPES[spelled]
        else:
            fail("type", f"{raw!r} is a conversation turn: history imports take item events "
                 "only (log turns with log_message; `convrec train` reads them from files)")
    elif spelled not in EVENT_TYPES:
        fail("type", f"unknown event type {raw!r}; expected one of " + expected)
    else:
        kind = cast(EventType, spelled)

    raw = get("item")
    item_id = _identifier(raw)
    if raw is not None and item_id is None:
        fail("item", f"must be a string, not {_kind(raw)}")
    elif item_id is not None and known_item_ids is not None and item_id not in known_item_ids:
        fail("item", f"unknown item id {item_id!r}")

    ts: datetime | None = None
    raw = get("ts")
    if raw is None:
        fail("ts", "is required (Unix seconds or ISO 8601)")
    else:
        try:
            ts = parse_timestamp(raw)
        except ValueError as exc:
            fail("ts", str(exc))

    value: float | None = None
    raw = get("value")
    if raw is not None:
        try:
            value = _number(raw)
        except ValueError as exc:
            fail("value", str(exc))

    text: str | None = None
    raw = get("text")
    if isinstance(raw, str):
        text = raw
    elif raw is not None:
        fail("text", f"must be a string, not {_kind(raw)}")

    raw = get("conversation")
    conversation_id = _identifier(raw)
    if raw is not None and conversation_id is None:
        fail("conversation", f"must be a string, not {_kind(raw)}")

    if kind is not None:  # the rules of its type, for fields not already reported
        failed = {e.field for e in errors}
        for canonical, message in _type_rules(kind, item_id, text):
            if _key(row, canonical) not in failed:
                fail(canonical, message)
    if role is not None:  # a turn: its text, and nothing about an item
        if get("item") is not None:
            fail("item", f"a {spelled} has no item")
        if not (text and text.strip()) and "text" not in {e.field for e in errors}:
            fail("text", f"is required for type '{spelled}'")
        if errors or user_id is None or ts is None or text is None:
            return None, errors
        return TurnRecord(user_id=user_id, role=role, text=text, ts=ts,
                          conversation_id=conversation_id), []
    if errors or user_id is None or kind is None or ts is None:
        return None, errors
    event = Event(
        user_id=user_id,
        item_id=item_id,
        type=kind,
        ts=ts,
        value=value,
        text=text,
        tenant=tenant,
        conversation_id=conversation_id,
    )
    return event, []


def _kind(value: object) -> str:
    return "a boolean" if isinstance(value, bool) else type(value).__name__


def _key(row: _Row, canonical: str) -> str:
    """The key a row spells a canonical field with (the canonical name if absent)."""
    return row[canonical][0] if canonical in row else canonical


def _identifier(value: object) -> str | None:
    """An id as text: strings are stripped, JSON integers are accepted as their digits."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _number(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, int | float | Decimal):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.match(value.strip()):
        number = float(value.strip())
    else:
        raise ValueError(f"must be a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"must be a finite number, got {value}")
    return number
