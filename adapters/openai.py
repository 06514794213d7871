"""OpenAI tools: strict function definitions and a dispatcher for the model's tool calls.

No OpenAI package is needed: definitions are plain JSON and the dispatcher reads plain dicts
(or SDK objects, through their ``model_dump()``)::

    dispatcher = OpenAIToolDispatcher(rec, user_id="u1", conversation_id="chat-42")
    response = client.chat.completions.create(model=..., messages=messages,
                                              tools=dispatcher.tools("chat"))
    for call in response.choices[0].message.tool_calls or []:
        messages.append(dispatcher.run(call))        # {"role": "tool", ...}

    response = client.responses.create(model=..., input=items, tools=dispatcher.tools("responses"))
    items += [dispatcher.run(i) for i in response.output if i.type == "function_call"]

The user id, tenant and conversation are the dispatcher's, set by the host; they are not in
the schemas and a call that sends them gets a ``reserved_argument`` error as its output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from convrec.tool import ContractTool, ToolContext, ToolError, contract_tools

if TYPE_CHECKING:
    from convrec.recommender import Recommender

__all__ = ["OpenAIToolDispatcher", "chat_completions_tool", "openai_tools", "responses_tool"]

Api = Literal["chat", "responses"]


def chat_completions_tool(contract: ContractTool) -> dict[str, Any]:
    """A Chat Completions tool: ``{"type": "function", "function": {..., "strict": true}}``."""
    return {
        "type": "function",
        "function": {
            "name": contract.name,
            "description": contract.description,
            "parameters": contract.input_schema(),
            "strict": True,
        },
    }


def responses_tool(contract: ContractTool) -> dict[str, Any]:
    """A Responses API tool: the flat ``{"type": "function", "name": ..., "strict": true}``."""
    return {
        "type": "function",
        "name": contract.name,
        "description": contract.description,
        "parameters": contract.input_schema(),
        "strict": True,
    }


def openai_tools(contracts: Sequence[ContractTool], api: Api = "chat") -> list[dict[str, Any]]:
    """Definitions of ``contracts`` for the Chat Completions (``"chat"``) or Responses API."""
    build = chat_completions_tool if api == "chat" else responses_tool
    return [build(c) for c in contracts]


class OpenAIToolDispatcher:
    """Runs a model's tool calls against the contract tools and answers the tool message.

    ``run`` takes a Chat Completions ``tool_calls[i]`` (``{"id", "function": {"name",
    "arguments"}}``) and answers ``{"role": "tool", "tool_call_id", "content"}``, or a
    Responses ``function_call`` item (``{"type": "function_call", "call_id", "name",
    "arguments"}``) and answers ``{"type": "function_call_output", "call_id", "output"}``.
    The content is the output model's JSON, or a ``ToolError``'s JSON; it never raises for
    a model's mistakes.
    """

    def __init__(self, recommender: Recommender, *, user_id: str | None = None,
                 tenant: str | None = None, conversation_id: str | None = None) -> None:
        context = ToolContext(user_id=user_id, tenant=tenant, conversation_id=conversation_id)
        suggest, feedback = contract_tools(recommender, context)
        self.contracts: dict[str, ContractTool] = {suggest.name: suggest}
        if user_id:
            self.contracts[feedback.name] = feedback

    def tools(self, api: Api = "chat") -> list[dict[str, Any]]:
        """The definitions to pass as ``tools=`` to the chosen API."""
        return openai_tools(list(self.contracts.values()), api)

    def run(self, call: Mapping[str, Any] | Any) -> dict[str, Any]:
        """Run one tool call and answer the message to append to the conversation."""
        data = _as_dict(call)
        if data.get("type") == "function_call":  # Responses API item
            call_id = str(data.get("call_id", ""))
            output = self._output(data.get("name"), data.get("arguments"))
            return {"type": "function_call_output", "call_id": call_id, "output": output}
        function = _as_dict(data.get("function") or {})
        output = self._output(function.get("name"), function.get("arguments"))
        return {"role": "tool", "tool_call_id": str(data.get("id", "")), "content": output}

    def run_all(self, calls: Sequence[Mapping[str, Any] | Any]) -> list[dict[str, Any]]:
        """Run every call of one model turn, in order."""
        return [self.run(call) for call in calls]

    def _output(self, name: Any, arguments: Any) -> str:
        contract = self.contracts.get(name) if isinstance(name, str) else None
        if contract is None:
            known = ", ".join(self.contracts)
            return ToolError(code="unknown_tool",
                             message=f"There is no tool {name!r}; the tools are: {known}."
                             ).model_dump_json()
        return contract.call(arguments).model_dump_json()


def _as_dict(value: Any) -> dict[str, Any]:
    """A plain dict from a dict or an OpenAI SDK object (pydantic, with ``model_dump``)."""
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    return dump() if callable(dump) else {}
