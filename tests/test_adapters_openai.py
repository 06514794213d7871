"""OpenAI tools: strict definitions in both API shapes and dispatcher round trips."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from convrec.adapters.openai import OpenAIToolDispatcher

LATE = [{"role": "user", "content": "My order is a week late and the tracking hasn't moved."}]


@pytest.fixture()
def dispatcher(world):
    return OpenAIToolDispatcher(world, user_id="u-1", conversation_id="chat-1")


def _strict_everywhere(schema) -> None:
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            assert schema["additionalProperties"] is False
            assert sorted(schema["required"]) == sorted(schema["properties"])
        for value in schema.values():
            _strict_everywhere(value)
    elif isinstance(schema, list):
        for value in schema:
            _strict_everywhere(value)


def test_chat_completions_definitions(dispatcher):
    tools = dispatcher.tools("chat")
    assert [t["function"]["name"] for t in tools] == ["suggest_content", "record_feedback"]
    for tool in tools:
        assert tool["type"] == "function" and tool["function"]["strict"] is True
        _strict_everywhere(tool["function"]["parameters"])
        json.dumps(tool)  # plain JSON


def test_responses_definitions_are_flat(dispatcher):
    for tool in dispatcher.tools("responses"):
        assert set(tool) == {"type", "name", "description", "parameters", "strict"}
        assert tool["strict"] is True
        _strict_everywhere(tool["parameters"])


def test_no_feedback_tool_without_a_user(world):
    names = [t["name"] for t in OpenAIToolDispatcher(world).tools("responses")]
    assert names == ["suggest_content"]


def test_chat_completions_round_trip(world, dispatcher):
    args = {"conversation": LATE, "k": 2, "kinds": None, "filters": None, "exclude_ids": None}
    call = {"id": "call_abc", "type": "function",
            "function": {"name": "suggest_content", "arguments": json.dumps(args)}}
    message = dispatcher.run(call)
    assert message["role"] == "tool" and message["tool_call_id"] == "call_abc"
    out = json.loads(message["content"])
    assert out["surfaced"] and out["suggestions"][0]["id"] == "shipping-delays"
    assert len(world.history("u-1").impressions) == len(out["suggestions"])  # logged once


def test_responses_round_trip(world, dispatcher):
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_xyz",
            "name": "record_feedback",
            "arguments": json.dumps({"item_id": "shipping-delays", "action": "purchased"})}
    output = dispatcher.run(item)
    assert output["type"] == "function_call_output" and output["call_id"] == "call_xyz"
    assert json.loads(output["output"])["recorded"] is True
    (event,) = world.history("u-1").events
    assert event.type == "purchase"


class _Function(BaseModel):  # the shape of the OpenAI SDK's objects (pydantic, model_dump)
    name: str
    arguments: str


class _ToolCall(BaseModel):
    id: str
    type: str = "function"
    function: _Function


def test_sdk_objects_are_accepted(dispatcher):
    call = _ToolCall(id="c1", function=_Function(name="suggest_content",
                                                 arguments=json.dumps({"conversation": LATE})))
    (message,) = dispatcher.run_all([call])
    assert json.loads(message["content"])["surfaced"] is True


@pytest.mark.parametrize(("name", "arguments", "code"), [
    ("suggest_content", "{not json", "invalid_arguments"),
    ("suggest_content", json.dumps({"conversation": LATE, "k": 99}), "invalid_arguments"),
    ("suggest_content", json.dumps({"conversation": LATE, "user_id": "x"}), "reserved_argument"),
    ("record_feedback", json.dumps({"item_id": "nope", "action": "clicked"}), "unknown_item"),
    ("delete_everything", "{}", "unknown_tool"),
])
def test_mistakes_come_back_as_tool_output(world, dispatcher, name, arguments, code):
    message = dispatcher.run({"id": "c", "function": {"name": name, "arguments": arguments}})
    error = json.loads(message["content"])
    assert error["error"] is True and error["code"] == code
    assert world.history("u-1").events == [] and world.history("x").impressions == []
