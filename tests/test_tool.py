"""The tool contract: schemas, injected context, structured errors, one write per call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convrec.tool import (
    FEEDBACK_DESCRIPTION,
    SUGGEST_DESCRIPTION,
    FeedbackOutput,
    Limits,
    RecordFeedbackTool,
    SuggestContentTool,
    SuggestOutput,
    ToolContext,
    ToolError,
    contract_tools,
    strict_schema,
)

LATE_PARCEL = [
    {"role": "user", "content": "My order is a week late and the tracking hasn't moved."},
]
SMALL_TALK = "User: Thanks, have a nice weekend!\nAssistant: You too!"
CTX = ToolContext(user_id="u-1", conversation_id="chat-1")


@pytest.fixture()
def tools(world):
    return contract_tools(world, CTX)


def _objects(schema: Any):
    """Every object schema inside ``schema``."""
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _objects(value)


# -- schemas ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tool_cls", [SuggestContentTool, RecordFeedbackTool])
def test_input_schema_is_strict_mode_compatible(tool_cls):
    schema = strict_schema(tool_cls.input_model)
    assert "$defs" not in schema
    objects = list(_objects(schema))
    assert objects
    for obj in objects:
        assert obj["additionalProperties"] is False
        assert sorted(obj["required"]) == sorted(obj["properties"])
        assert all("default" not in prop for prop in obj["properties"].values())
    for keyword in ("minLength", "maxLength", "$ref", "title"):  # outside the strict subset
        assert f'"{keyword}"' not in json.dumps(schema)


def test_host_context_is_not_in_the_schema():
    text = json.dumps([strict_schema(SuggestContentTool.input_model),
                       strict_schema(RecordFeedbackTool.input_model)])
    for name in ("user_id", "tenant", "conversation_id"):
        assert f'"{name}"' not in text


def test_descriptions_fit_llamaindex_limit_and_say_when_to_stay_silent():
    assert len(SUGGEST_DESCRIPTION) < 1024 and len(FEEDBACK_DESCRIPTION) < 1024
    assert "proactively" in SUGGEST_DESCRIPTION
    assert "do not mention suggestions" in SUGGEST_DESCRIPTION


# -- suggest ----------------------------------------------------------------------------------


def test_suggest_returns_items_with_links_and_reasons(tools):
    suggest, _ = tools
    out = suggest.call({"conversation": LATE_PARCEL, "k": 2})
    assert isinstance(out, SuggestOutput), out
    assert out.surfaced and 1 <= len(out.suggestions) <= 2
    top = out.suggestions[0]
    assert top.id == "shipping-delays" and top.url and top.reason and 0 <= top.score <= 1
    assert "shipping-delays" in out.as_text() and top.url in out.as_text()


def test_small_talk_is_silent_and_the_text_says_so(tools):
    out = tools[0].call({"conversation": SMALL_TALK})
    assert isinstance(out, SuggestOutput)
    assert not out.surfaced and out.suggestions == []
    assert "do not mention" in out.as_text()


def test_arguments_as_json_string_and_nulls(tools):
    out = tools[0].call(json.dumps({"conversation": LATE_PARCEL, "k": None, "kinds": None,
                                    "filters": None, "exclude_ids": None}))
    assert isinstance(out, SuggestOutput) and out.surfaced


def test_kinds_filters_and_exclusions_are_applied(tools):
    suggest, _ = tools
    out = suggest.call({"conversation": "User: I need a new kettle, the whistle broke",
                        "kinds": ["product"], "filters": {"in_stock": True, "price_max": 200},
                        "exclude_ids": ["kettle-enamel-blue"], "k": 5})
    assert isinstance(out, SuggestOutput) and out.surfaced
    assert all(s.kind == "product" and s.in_stock and s.price <= 200 for s in out.suggestions)
    assert "kettle-enamel-blue" not in {s.id for s in out.suggestions}


@pytest.mark.parametrize(("args", "field"), [
    ({"conversation": LATE_PARCEL, "k": 0}, "k"),
    ({"conversation": LATE_PARCEL, "k": 11}, "k"),
    ({"conversation": LATE_PARCEL, "k": "three"}, "k"),
    ({"conversation": LATE_PARCEL, "kinds": ["video"]}, "kinds.0"),
    ({"conversation": LATE_PARCEL, "filters": {"price_max": -1}}, "filters.price_max"),
    ({"conversation": LATE_PARCEL, "filters": {"tenant": "other"}}, "filters.tenant"),
    ({"conversation": [{"role": "user"}]}, "conversation"),
    ({"conversation": 42}, "conversation"),
    ({}, "conversation"),
    ({"conversation": LATE_PARCEL, "limit": 3}, "limit"),
])
def test_bad_arguments_are_structured_errors(tools, args, field):
    err = tools[0].call(args)
    assert isinstance(err, ToolError)
    assert err.code == "invalid_arguments"
    assert any(d.field.startswith(field) for d in err.details), err.details
    assert "Traceback" not in err.as_text()


@pytest.mark.parametrize("raw", ["{not json", "[1, 2]", b"\xff"])
def test_unparseable_arguments(tools, raw):
    err = tools[0].call(raw)
    assert isinstance(err, ToolError) and err.code == "invalid_arguments"


@pytest.mark.parametrize("name", ["user_id", "tenant", "conversation_id"])
def test_a_model_cannot_choose_user_or_tenant(world, tools, name):
    suggest, feedback = tools
    err = suggest.call({"conversation": LATE_PARCEL, name: "intruder"})
    assert isinstance(err, ToolError) and err.code == "reserved_argument"
    assert [d.field for d in err.details] == [name]
    err = feedback.call({"item_id": "shipping-delays", "action": "clicked", name: "intruder"})
    assert isinstance(err, ToolError) and err.code == "reserved_argument"
    assert world.history("intruder").impressions == []
    assert world.history("u-1", tenant="intruder").events == []


def test_oversized_conversation(world):
    suggest = SuggestContentTool(world, CTX, Limits(max_messages=50, max_chars=20_000))
    many = [{"role": "user", "content": "hello"}] * 51
    err = suggest.call({"conversation": many})
    assert isinstance(err, ToolError) and err.code == "conversation_too_large"
    err = suggest.call({"conversation": "User: " + "a" * 20_000})
    assert isinstance(err, ToolError) and err.code == "conversation_too_large"
    assert "20000" in err.details[0].message
    assert world.history("u-1").impressions == []


def test_suggest_logs_impressions_once_for_the_injected_user(world, tools):
    out = tools[0].call({"conversation": LATE_PARCEL, "k": 2})
    history = world.history("u-1")
    assert [i.item_id for i in history.impressions] == [s.id for s in out.suggestions]
    assert {i.conversation_id for i in history.impressions} == {"chat-1"}
    assert history.events == []
    # the user turn the suggestions answered, kept for calibration and adaptation
    assert [(m.role, m.content) for m in history.messages] == [
        ("user", LATE_PARCEL[-1]["content"])]


def test_without_a_user_nothing_is_written(world):
    suggest = SuggestContentTool(world)
    assert isinstance(suggest.call({"conversation": LATE_PARCEL}), SuggestOutput)
    assert world.history_store.users() == []


def test_per_call_context_overrides_the_bound_one(world, tools):
    tools[0].call({"conversation": LATE_PARCEL}, ToolContext(user_id="u-2",
                                                             conversation_id="chat-2"))
    assert world.history("u-2").impressions and not world.history("u-1").impressions
    bound = tools[0].bind(user_id="u-3")
    assert bound.context.user_id == "u-3" and bound.context.conversation_id == "chat-1"


def test_tenant_isolation(world, tools):
    other = tools[0].bind(tenant="another-store")
    out = other.call({"conversation": LATE_PARCEL})
    assert isinstance(out, SuggestOutput) and not out.surfaced  # no items in that tenant


# -- feedback ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("action", "event_type", "value"), [
    ("clicked", "click", None),
    ("dismissed", "dismiss", None),
    ("purchased", "purchase", None),
    ("helpful", "rate", 1.0),
    ("not_helpful", "rate", 0.0),
    ("Not Helpful", "rate", 0.0),
])
def test_feedback_writes_one_event(world, tools, action, event_type, value):
    out = tools[1].call({"item_id": "shipping-delays", "action": action})
    assert isinstance(out, FeedbackOutput) and out.recorded
    (event,) = world.history("u-1").events
    assert (event.item_id, event.type, event.value) == ("shipping-delays", event_type, value)
    assert event.conversation_id == "chat-1"


def test_dismissed_items_are_not_suggested_again(tools):
    suggest, feedback = tools
    assert isinstance(feedback.call({"item_id": "shipping-delays", "action": "dismissed"}),
                      FeedbackOutput)
    out = suggest.bind(conversation_id="chat-new").call({"conversation": LATE_PARCEL})
    assert "shipping-delays" not in {s.id for s in out.suggestions}


def test_feedback_errors(world, tools):
    feedback = tools[1]
    err = feedback.call({"item_id": "no-such-item", "action": "clicked"})
    assert isinstance(err, ToolError) and err.code == "unknown_item"
    err = feedback.call({"item_id": "shipping-delays", "action": "loved"})
    assert isinstance(err, ToolError) and err.code == "invalid_arguments"
    err = feedback.call({"item_id": "  ", "action": "clicked"})
    assert isinstance(err, ToolError) and err.details[0].field == "item_id"
    err = RecordFeedbackTool(world).call({"item_id": "shipping-delays", "action": "clicked"})
    assert isinstance(err, ToolError) and err.code == "no_user"
    assert world.history("u-1").events == []


def test_engine_failure_is_an_error_not_a_traceback(world, tools, caplog):
    world.history_store.close()  # a real failure: the database is gone
    err = tools[1].call({"item_id": "shipping-delays", "action": "clicked"})
    assert isinstance(err, ToolError) and err.code == "internal_error"
    assert "Traceback" not in err.message
    assert "record_feedback failed" in caplog.text  # the host's log keeps the details


# -- property: nothing a model sends makes call() raise ---------------------------------------

_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 20), st.text(max_size=12),
    st.lists(st.text(max_size=8), max_size=3),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "bot", 3]),
                                    "content": st.text(max_size=20)}), max_size=3),
    st.dictionaries(st.sampled_from(["in_stock", "price_max", "tenant", "x"]),
                    st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=5)), max_size=3),
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.dictionaries(
    st.sampled_from(["conversation", "k", "kinds", "filters", "exclude_ids", "user_id", "zz"]),
    _values, max_size=5))
def test_call_never_raises(tools, args):
    out = tools[0].call(args)
    assert isinstance(out, SuggestOutput | ToolError)


def test_a_tool_call_and_its_feedback_leave_a_click_the_encoder_can_learn_from(world, tools):
    """The agent path logs what the user said with the impressions, so clicks reported through
    record_feedback pair with it (convrec adapt-encoder) without the host logging messages."""
    from convrec.pipeline.feedback import logged_clicks

    suggest, feedback = tools
    out = suggest.call({"conversation": LATE_PARCEL})
    assert isinstance(out, SuggestOutput) and out.suggestions
    suggest.call({"conversation": LATE_PARCEL})  # asked again: the turn is not logged twice
    assert feedback.call({"item_id": out.suggestions[0].id, "action": "clicked"}).recorded
    said = LATE_PARCEL[-1]["content"]
    assert [m.content for m in world.history_store.conversation_messages("chat-1")] == [said]
    assert logged_clicks(world.history_store) == [(said, out.suggestions[0].id)]
