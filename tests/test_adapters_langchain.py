"""LangChain adapter: standard tool tests, content and artifact, injected user, errors."""

from __future__ import annotations

import tempfile

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_tests.unit_tests import ToolsUnitTests

from convrec.adapters.langchain import langchain_tools, suggest_content_tool
from convrec.recommender import Recommender

LATE = [{"role": "user", "content": "My order is a week late and the tracking hasn't moved."}]


def _call(tool: BaseTool, args: dict, call_id: str = "call-1") -> ToolMessage:
    return tool.invoke({"type": "tool_call", "id": call_id, "name": tool.name, "args": args})


class TestSuggestContentStandard(ToolsUnitTests):
    """langchain-tests' contract for tools (construction and schema; no engine is opened)."""

    @property
    def tool_constructor(self) -> BaseTool:
        # A Recommender opens nothing until used, so an empty workspace is enough here.
        return suggest_content_tool(Recommender(workspace=tempfile.mkdtemp()), user_id="u-1")

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"conversation": LATE, "k": 2, "kinds": None, "filters": None,
                "exclude_ids": None}


@pytest.fixture()
def tools(world):
    suggest, feedback = langchain_tools(world, user_id="u-1", conversation_id="chat-1")
    return suggest, feedback


def test_content_has_ids_and_urls_and_artifact_has_full_records(tools):
    message = _call(tools[0], {"conversation": LATE, "k": 2})
    assert isinstance(message, ToolMessage) and message.status == "success"
    top = message.artifact["suggestions"][0]
    assert top["id"] == "shipping-delays"
    assert top["id"] in message.content and top["url"] in message.content
    assert {"snippet", "reason", "score", "kind", "title"} <= set(top)
    assert message.artifact["surfaced"] is True


def test_strict_openai_conversion(tools):
    spec = convert_to_openai_tool(tools[0], strict=True)
    params = spec["function"]["parameters"]
    assert spec["function"]["strict"] is True
    assert sorted(params["required"]) == sorted(params["properties"])
    assert "user_id" not in params["properties"]


@pytest.mark.parametrize("name", ["user_id", "tenant"])
def test_model_cannot_override_injected_user(world, tools, name):
    message = _call(tools[0], {"conversation": LATE, name: "intruder"})
    assert message.status == "error" and "reserved_argument" in message.content
    _call(tools[0], {"conversation": LATE})
    assert world.history("u-1").impressions and not world.history("intruder").impressions


def test_invalid_arguments_are_readable(tools):
    message = _call(tools[0], {"conversation": LATE, "k": 42})
    assert message.status == "error"
    assert "invalid_arguments" in message.content and "k:" in message.content


def test_feedback_records_for_the_bound_user(world, tools):
    message = _call(tools[1], {"item_id": "shipping-delays", "action": "helpful"})
    assert message.artifact["recorded"] is True
    (event,) = world.history("u-1").events
    assert (event.type, event.value, event.conversation_id) == ("rate", 1.0, "chat-1")


def test_contract_errors_are_error_messages(world, tools):
    message = _call(tools[1], {"item_id": "no-such-item", "action": "clicked"})
    assert message.status == "error" and message.content.startswith("Error (unknown_item)")
    message = _call(tools[0], {"conversation": [{"role": "user", "content": "x" * 20_001}]})
    assert message.status == "error" and "conversation_too_large" in message.content
    assert world.history("u-1").events == []


def test_feedback_tool_needs_a_user(world):
    assert [t.name for t in langchain_tools(world)] == ["suggest_content"]
