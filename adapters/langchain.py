"""LangChain adapter: the contract tools as ``StructuredTool``s.

    from convrec.adapters.langchain import langchain_tools
    tools = langchain_tools(rec, user_id="u1", conversation_id="chat-42")
    agent = create_agent(model, tools=tools)

Each tool answers ``(content, artifact)`` (``response_format="content_and_artifact"``): the
content is short text for the model with every item's id and URL, the artifact is the full
output record (``ToolMessage.artifact``) for the application. A failed call (bad arguments,
unknown item, ...) is a ``ToolMessage`` with ``status="error"`` whose content is the
contract's ``ToolError`` as text, e.g. ``Error (invalid_arguments): ... [k: ...]``.

The user id, tenant and conversation are bound when the tools are built, never taken from
the model: the argument schema has no such fields and a call that sends them is refused with
a ``reserved_argument`` error. A host serving many users builds the tools per conversation
(cheap: they share one ``Recommender``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

try:
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from convrec.adapters._optional import missing_extra

    raise missing_extra("langchain", exc) from exc

from pydantic import ValidationError

from convrec.tool import (
    ContractTool,
    RecordFeedbackTool,
    SuggestContentTool,
    ToolContext,
    ToolError,
)

if TYPE_CHECKING:
    from convrec.recommender import Recommender

__all__ = ["as_langchain_tool", "langchain_tools", "record_feedback_tool", "suggest_content_tool"]


def as_langchain_tool(contract: ContractTool) -> StructuredTool:
    """Wrap one contract tool (already bound to its context) as a ``StructuredTool``."""

    def run(**kwargs: Any) -> tuple[str, dict[str, Any]]:
        result = contract.call(kwargs)
        if isinstance(result, ToolError):  # -> ToolMessage(status="error", content=text)
            raise ToolException(result.as_text())
        return result.as_text(), result.model_dump(mode="json")  # type: ignore[attr-defined]

    def on_invalid(exc: ValidationError) -> str:
        # LangChain validates against args_schema before ``run``; answer in the same shape.
        return ToolError.from_validation(exc, contract.name).as_text()

    def on_error(exc: ToolException) -> str:
        return str(exc)

    return StructuredTool.from_function(
        func=run,
        name=contract.name,
        description=contract.description,
        args_schema=contract.input_model,
        response_format="content_and_artifact",
        handle_validation_error=on_invalid,
        handle_tool_error=on_error,
    )


def _context(user_id: str | None, tenant: str | None,
             conversation_id: str | None) -> ToolContext:
    return ToolContext(user_id=user_id, tenant=tenant, conversation_id=conversation_id)


def suggest_content_tool(recommender: Recommender, *, user_id: str | None = None,
                         tenant: str | None = None,
                         conversation_id: str | None = None) -> StructuredTool:
    """``suggest_content`` for one user/tenant/conversation."""
    ctx = _context(user_id, tenant, conversation_id)
    return as_langchain_tool(SuggestContentTool(recommender, ctx))


def record_feedback_tool(recommender: Recommender, *, user_id: str | None = None,
                         tenant: str | None = None,
                         conversation_id: str | None = None) -> StructuredTool:
    """``record_feedback`` for one user/tenant/conversation (needs a ``user_id``)."""
    ctx = _context(user_id, tenant, conversation_id)
    return as_langchain_tool(RecordFeedbackTool(recommender, ctx))


def langchain_tools(recommender: Recommender, *, user_id: str | None = None,
                    tenant: str | None = None,
                    conversation_id: str | None = None) -> list[BaseTool]:
    """Both tools; ``record_feedback`` only when a ``user_id`` is known."""
    tools: list[BaseTool] = [suggest_content_tool(recommender, user_id=user_id, tenant=tenant,
                                                  conversation_id=conversation_id)]
    if user_id:
        tools.append(record_feedback_tool(recommender, user_id=user_id, tenant=tenant,
                                          conversation_id=conversation_id))
    return tools
