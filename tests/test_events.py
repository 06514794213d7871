"""Reading behaviour-event files: formats, line-numbered errors, timestamps."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convrec.events import (
    MAX_LISTED_ERRORS,
    EventFileError,
    EventRowError,
    event_problems,
    file_format,
    from_epoch_us,
    load_events,
    parse_timestamp,
    read_events,
    to_epoch_us,
)
from convrec.types import EVENT_TYPES, Event

T0 = 1_714_564_800  # 2024-05-01T12:00:00Z


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(path: Path, *rows: object) -> Path:
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def only_error(result_errors: list[EventRowError]) -> EventRowError:
    assert len(result_errors) == 1, result_errors
    return result_errors[0]


# -- formats --------------------------------------------------------------------------------


def test_jsonl_reads_every_field_and_aliases(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "events.jsonl",
        {"user": "u1", "item": "a", "type": "click", "ts": T0, "conversation": "c1"},
        {
            "user_id": "u1",
            "item_id": "b",
            "type": "rate",
            "time": "2024-05-01T12:00:01Z",
            "value": 4,
        },
        {"user": 7, "type": "search", "timestamp": T0 + 2.25, "text": "reset password"},
    )
    result = read_events(path, tenant="acme")
    assert result.ok and result.format == "jsonl" and result.rows == 3
    assert result.lines == [1, 2, 3]
    first, second, third = result.events
    assert first == Event(
        user_id="u1",
        item_id="a",
        type="click",
        ts=datetime(2024, 5, 1, 12, tzinfo=UTC),
        tenant="acme",
        conversation_id="c1",
    )
    assert (second.item_id, second.type, second.value) == ("b", "rate", 4.0)
    assert second.ts == datetime(2024, 5, 1, 12, 0, 1, tzinfo=UTC)
    assert (third.user_id, third.item_id, third.text) == ("7", None, "reset password")
    assert third.ts == datetime(2024, 5, 1, 12, 0, 2, 250000, tzinfo=UTC)


def test_jsonl_skips_blank_lines_but_keeps_physical_line_numbers(tmp_path: Path) -> None:
    row = {"user": "u", "item": "a", "type": "view", "ts": T0}
    path = write(tmp_path / "e.ndjson", f"\n{json.dumps(row)}\n   \n\r\n{json.dumps(row)}\r\n")
    result = read_events(path)
    assert result.ok and result.rows == 2 and result.lines == [2, 5]


def test_csv_reads_rows_with_physical_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "events.csv",
        "User_ID,item,type,ts,value,text,conversation\n"
        "u1,a,click,1714564800,,,c1\n"
        "\n"
        'u1,,search,2024-05-01T12:00:00+02:00,,"two\nlines",\n'
        "u2,b,rate,1714564800.5,3.5,,\n",
    )
    result = read_events(path)
    assert result.ok and result.format == "csv" and result.rows == 3
    assert result.lines == [2, 4, 6]
    click, search, rate = result.events
    assert (click.user_id, click.item_id, click.conversation_id) == ("u1", "a", "c1")
    assert click.value is None and click.text is None
    assert search.item_id is None and search.text == "two\nlines"
    assert search.ts == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert rate.value == 3.5 and rate.ts == datetime(2024, 5, 1, 12, 0, 0, 500000, tzinfo=UTC)


def test_csv_with_byte_order_mark_and_crlf(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfuser,item,type,ts\r\nu1,a,purchase,2024-05-01\r\n")
    result = read_events(path)
    assert result.ok and result.lines == [2]
    assert result.events[0].ts == datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("a.jsonl", "jsonl"), ("a.JSON", "jsonl"), ("a.ndjson", "jsonl"), ("a.csv", "csv")],
)
def test_format_from_extension(name: str, fmt: str) -> None:
    assert file_format(name) == fmt


@pytest.mark.parametrize("name", ["events.txt", "events", "events.tsv"])
def test_other_extensions_are_refused(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, "user,item,type,ts\n")
    with pytest.raises(EventFileError, match="unsupported extension"):
        read_events(path)


# -- errors name file, line and field -------------------------------------------------------


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "e.jsonl", {"user": "u", "item": "a", "type": "view", "ts": T0}, '{"user": "u",'
    )
    result = read_events(path)
    error = only_error(result.errors)
    assert (error.line, error.field) == (2, None)
    assert str(error).startswith(f"{path}:2: malformed JSON")
    assert len(result.events) == 1 and result.rows == 2


def test_json_array_gets_a_hint(tmp_path: Path) -> None:
    path = write(tmp_path / "e.json", '[{"user": "u", "item": "a", "type": "view", "ts": 1}]\n')
    error = only_error(read_events(path).errors)
    assert "one object per line" in error.message


def test_unknown_type_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "e.jsonl", {"user": "u", "item": "a", "type": "clik", "ts": T0})
    error = only_error(read_events(path).errors)
    assert (error.line, error.field) == (1, "type")
    assert "'clik'" in error.message
    assert all(t in error.message for t in EVENT_TYPES)


def test_unknown_item_only_when_known_ids_given(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "e.jsonl", {"user": "u", "item": "ghost", "type": "view", "ts": T0})
    assert read_events(path).ok
    error = only_error(read_events(path, known_item_ids={"a"}).errors)
    assert (error.line, error.field) == (1, "item")
    assert "unknown item id 'ghost'" in error.message


@pytest.mark.parametrize("ts", ["yesterday", "2024-13-01", True, [1], "1e20", 1.7e12])
def test_bad_timestamps(tmp_path: Path, ts: object) -> None:
    path = jsonl(tmp_path / "e.jsonl", {"user": "u", "item": "a", "type": "view", "time": ts})
    error = only_error(read_events(path).errors)
    assert (error.line, error.field) == (1, "time")  # named as the file spells it


def test_millisecond_timestamps_get_a_hint() -> None:
    with pytest.raises(ValueError, match="milliseconds"):
        parse_timestamp(1_714_564_800_000)


@pytest.mark.parametrize(
    ("row", "field", "needle"),
    [
        ({"user": "u", "type": "click", "ts": T0}, "item", "only 'search' may omit it"),
        ({"user": "u", "item": "", "type": "click", "ts": T0}, "item", "only 'search'"),
        ({"user": "u", "type": "search", "ts": T0}, "text", "required for type 'search'"),
        ({"user": "", "item": "a", "type": "view", "ts": T0}, "user", "is required"),
        ({"user": "u", "item": "a", "type": "view"}, "ts", "is required"),
        ({"user": "u", "item": "a", "type": "rate", "ts": T0, "value": "x"}, "value", "number"),
        ({"user": "u", "item": "a", "type": "rate", "ts": T0, "value": True}, "value", "boolean"),
        ({"user": "u", "item": 1.5, "type": "view", "ts": T0}, "item", "must be a string"),
        ({"user": "u", "item": "a", "type": "view", "ts": T0, "valeu": 1}, "valeu", "known key"),
        ({"user": "u", "user_id": "v", "item": "a", "type": "view", "ts": T0}, "user_id", "twice"),
    ],
)
def test_row_rules(tmp_path: Path, row: dict[str, object], field: str, needle: str) -> None:
    path = jsonl(tmp_path / "e.jsonl", row)
    error = only_error(read_events(path).errors)
    assert (error.line, error.field) == (1, field)
    assert needle in error.message


def test_every_problem_of_a_row_is_reported(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "e.jsonl", {"user": "u", "item": "a", "type": "nope", "ts": "never"})
    assert {e.field for e in read_events(path).errors} == {"type", "ts"}
    path = jsonl(tmp_path / "r.jsonl", {"user": "u", "item": "x", "type": "rate", "ts": "never"})
    errors = read_events(path, known_item_ids={"a"}).errors
    assert [(e.field, e.message.split(" ")[0]) for e in errors] == [
        ("item", "unknown"),
        ("ts", "'never'"),
    ]


def test_a_rating_may_come_without_its_value(tmp_path: Path) -> None:
    """SASRec-style data keeps only that a rating happened (the issue's events format)."""
    path = jsonl(tmp_path / "e.jsonl", {"user": "u", "item": "a", "type": "rate", "ts": T0})
    result = read_events(path, known_item_ids={"a"})
    assert result.errors == [] and result.events[0].value is None


def test_nan_is_not_a_number(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "e.jsonl", '{"user": "u", "item": "a", "type": "rate", "ts": 1, "value": NaN}'
    )
    error = only_error(read_events(path).errors)
    assert error.line == 1 and "NaN" in error.message


def test_csv_errors_use_physical_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "e.csv",
        'user,item,type,ts,text\nu,,search,1,"a\nb"\n\nu,,rate,1,\nu,a,view\n',
    )
    result = read_events(path)
    assert [(e.line, e.field) for e in result.errors] == [(5, "item"), (6, None)]
    assert "has 3 fields but the header (line 1) has 5" in result.errors[1].message
    assert result.lines == [2]


def test_csv_header_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "user,item,kind,when\nu,a,view,1\n")
    result = read_events(path)
    assert not result.events and result.rows == 0
    assert {(e.line, e.field) for e in result.errors} == {
        (1, "kind"),
        (1, "when"),
        (1, "type"),
        (1, "ts"),
    }


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"user,item,type,ts\nu,caf\xe9,view,1\n")
    error = only_error(read_events(path).errors)
    assert error.line == 2 and "UTF-8" in error.message


def test_load_events_raises_with_a_capped_listing(tmp_path: Path) -> None:
    rows = [{"user": "u", "item": "a", "type": "bad", "ts": T0} for _ in range(25)]
    path = jsonl(tmp_path / "e.jsonl", {"user": "u", "item": "a", "type": "view", "ts": T0}, *rows)
    with pytest.raises(EventFileError) as caught:
        load_events(path)
    message = str(caught.value)
    assert message.splitlines()[0] == f"{path}: 25 invalid rows (of 26)"
    assert f"{path}:2: field 'type': unknown event type 'bad'" in message
    assert len(message.splitlines()) == 1 + MAX_LISTED_ERRORS + 1
    assert message.endswith("... and 5 more")
    assert len(caught.value.errors) == 25


def test_load_events_skip_invalid_keeps_the_good_rows(tmp_path: Path) -> None:
    path = jsonl(
        tmp_path / "e.jsonl",
        {"user": "u", "item": "a", "type": "view", "ts": T0},
        "not json",
        {"user": "u", "item": "b", "type": "view", "ts": T0},
    )
    result = load_events(path, skip_invalid=True)
    assert [e.item_id for e in result.events] == ["a", "b"]
    assert [e.line for e in result.errors] == [2]


def test_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_events(tmp_path / "absent.jsonl")


def test_event_problems_for_in_memory_events() -> None:
    assert event_problems(Event(user_id="u", item_id="a", type="view")) == []
    assert [f for f, _ in event_problems(Event(user_id="u", type="rate"))] == ["item"]
    assert event_problems(Event(user_id="u", item_id="a", type="rate")) == []


# -- timestamps -----------------------------------------------------------------------------

offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Years 2..9998 so that converting any offset to UTC stays inside datetime's range.
instants = st.datetimes(
    min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31), timezones=offsets
)


def unix_seconds_text(moment: datetime) -> str:
    """Exact decimal Unix seconds for a datetime (what a careful exporter writes)."""
    micros = to_epoch_us(moment)
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    return f"{sign}{seconds}.{fraction:06d}"


@given(instants)
def test_iso_text_parses_back_to_the_same_instant(moment: datetime) -> None:
    parsed = parse_timestamp(moment.isoformat())
    assert parsed == moment and parsed.tzinfo is UTC


@given(instants)
def test_iso_text_with_z_and_space(moment: datetime) -> None:
    utc = moment.astimezone(UTC)
    assert parse_timestamp(utc.replace(tzinfo=None).isoformat(sep=" ") + "Z") == moment


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_naive_iso_text_is_utc(moment: datetime) -> None:
    assert parse_timestamp(moment.isoformat()) == moment.replace(tzinfo=UTC)


@given(instants)
def test_unix_seconds_parse_back_to_the_same_instant(moment: datetime) -> None:
    text = unix_seconds_text(moment)
    assert parse_timestamp(text) == moment
    assert parse_timestamp(Decimal(text)) == moment
    if abs(moment.timestamp()) < 2**32:  # a float holds microseconds up to ~2106
        as_json = json.loads(json.dumps({"ts": float(text)}))["ts"]
        assert parse_timestamp(as_json) == moment


@given(
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1), timezones=offsets)
)
def test_float_unix_seconds_keep_microseconds(moment: datetime) -> None:
    assert parse_timestamp(moment.timestamp()) == moment
    whole = moment.replace(microsecond=0)
    assert parse_timestamp(int(whole.timestamp())) == whole


@given(instants)
def test_epoch_microseconds_round_trip(moment: datetime) -> None:
    assert from_epoch_us(to_epoch_us(moment)) == moment


# -- reader round trip ----------------------------------------------------------------------

ids = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=12,
)
texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() == s and s)
utc_instants = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


@st.composite
def valid_events(draw: st.DrawFn) -> Event:
    kind = draw(st.sampled_from(EVENT_TYPES))
    search = kind == "search"
    return Event(
        user_id=draw(ids),
        item_id=draw(st.none() | ids) if search else draw(ids),
        type=kind,
        ts=draw(utc_instants),
        value=draw(st.none() | st.floats(allow_nan=False, allow_infinity=False)),
        text=draw(texts) if search else draw(st.none() | texts),
        tenant="t",
        conversation_id=draw(st.none() | ids),
    )


def as_row(event: Event, style: int) -> dict[str, object]:
    ts: object = (
        event.ts.isoformat()
        if style % 3 == 0
        else unix_seconds_text(event.ts)
        if style % 3 == 1
        else event.ts.replace(tzinfo=None).isoformat()
    )
    return {
        "user": event.user_id,
        "item": event.item_id,
        "type": event.type,
        "ts": ts,
        "value": event.value,
        "text": event.text,
        "conversation": event.conversation_id,
    }


@settings(max_examples=50, deadline=None)
@given(st.lists(valid_events(), max_size=8), st.integers(0, 2), st.booleans())
def test_valid_rows_round_trip(
    tmp_path_factory: pytest.TempPathFactory, events: list[Event], style: int, as_csv: bool
) -> None:
    folder = tmp_path_factory.mktemp("roundtrip")
    rows = [as_row(e, style) for e in events]
    if as_csv:
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(as_row(Event(user_id="x", type="view"), 0)))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    k: "" if v is None else repr(v) if isinstance(v, float) else v
                    for k, v in row.items()
                }
            )
        path = folder / "e.csv"
        path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    else:
        path = jsonl(folder / "e.jsonl", *rows)
    result = load_events(path, tenant="t")
    assert result.events == events
    assert result.rows == len(events)
