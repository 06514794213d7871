"""LlamaIndex adapter: the contract tools as ``FunctionTool``s.

    from convrec.adapters.llamaindex import llamaindex_tools
    tools = llamaindex_tools(rec, user_id="u1", conversation_id="chat-42")
    agent = FunctionAgent(tools=tools, llm=llm)

The schema is the contract's input model (``fn_schema``); the description fits LlamaIndex's
1,024-character limit. A call's ``ToolOutput`` has short text for the model as its content and
the output model (or the contract's ``ToolError``) as ``raw_output``. The user id, tenant
and conversation are bound here by the host, never passed by the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from llama_index.core.tools import FunctionTool
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from convrec.adapters._optional import missing_extra

    raise missing_extra("llamaindex", exc) from exc

from convrec.tool import ContractTool, ToolContext, contract_tools

if TYPE_CHECKING:
    from pydantic import BaseModel

    from convrec.recommender import Recommender

__all__ = ["as_llamaindex_tool", "llamaindex_tools"]


def as_llamaindex_tool(contract: ContractTool) -> FunctionTool:
    """Wrap one contract tool (already bound to its context) as a ``FunctionTool``."""

    def run(**kwargs: Any) -> BaseModel:
        return contract.call(kwargs)

    def as_text(result: BaseModel) -> str:
        # A string from the callback becomes the content; raw_output keeps the model.
        return result.as_text()  # type: ignore[attr-defined]

    run.__name__ = contract.name
    return FunctionTool.from_defaults(run, name=contract.name, description=contract.description,
                                      fn_schema=contract.input_model, callback=as_text)


def llamaindex_tools(recommender: Recommender, *, user_id: str | None = None,
                     tenant: str | None = None,
                     conversation_id: str | None = None) -> list[FunctionTool]:
    """``suggest_content``, plus ``record_feedback`` when a ``user_id`` is known."""
    context = ToolContext(user_id=user_id, tenant=tenant, conversation_id=conversation_id)
    suggest, feedback = contract_tools(recommender, context)
    tools = [as_llamaindex_tool(suggest)]
    if user_id:
        tools.append(as_llamaindex_tool(feedback))
    return tools
