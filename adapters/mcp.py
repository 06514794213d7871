"""MCP adapter: an ``mcp`` 2.x ``MCPServer`` with ``suggest_content`` and ``record_feedback``.

    convrec serve mcp                                   # stdio, for a desktop agent
    convrec serve mcp --transport streamable-http --port 8000   # http://127.0.0.1:8000/mcp

The engine (encoder, index, history) is opened once, in the server's lifespan, and shared by
every call. Each tool publishes the contract's input schema and its output schema; a result
carries structured content (the output model) and a text copy. A bad call answers
``isError: true`` with the contract's ``ToolError`` as structured content.

Who the user is comes from the host, never from the model: the server's ``user_id`` /
``tenant`` / ``conversation_id`` (``convrec serve mcp --user u1``), or, over streamable
HTTP when ``identity_headers`` is on, the ``X-User-Id`` / ``X-Tenant`` / ``X-Conversation-Id``
headers that the host (a gateway in front of the server) sets on its connection.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.types import CallToolResult, TextContent, ToolAnnotations
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from convrec.adapters._optional import missing_extra

    raise missing_extra("mcp", exc) from exc

import anyio.to_thread
from pydantic import WithJsonSchema

from convrec.tool import (
    ContractTool,
    RecordFeedbackTool,
    SuggestContentTool,
    ToolContext,
    contract_tools,
    strict_schema,
    warm_up,
)

if TYPE_CHECKING:
    from convrec.recommender import Recommender

__all__ = ["IDENTITY_HEADERS", "ServerState", "create_mcp_server", "run_server"]

#: Headers read for the host-injected context when ``identity_headers`` is on.
IDENTITY_HEADERS = {"user_id": "x-user-id", "tenant": "x-tenant",
                    "conversation_id": "x-conversation-id"}


@dataclass
class ServerState:
    """What the lifespan opens once: the engine and the contract tools on it."""

    recommender: Recommender
    tools: dict[str, ContractTool]


def create_mcp_server(
    recommender: Recommender | Callable[[], Recommender],
    *,
    user_id: str | None = None,
    tenant: str | None = None,
    conversation_id: str | None = None,
    identity_headers: bool = False,
    name: str = "convrec",
) -> MCPServer[ServerState]:
    """An MCP server exposing the contract tools.

    ``recommender`` is a Recommender, or a function that builds one inside the lifespan (the
    server then closes it on shutdown). ``user_id``/``tenant``/``conversation_id`` are the
    default context of every call; with ``identity_headers`` the host's HTTP headers
    (``IDENTITY_HEADERS``) override them per request.
    """
    default = ToolContext(user_id=user_id, tenant=tenant, conversation_id=conversation_id)

    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        owned = callable(recommender)
        rec: Recommender = recommender() if owned else recommender  # type: ignore[operator,assignment]
        try:
            await anyio.to_thread.run_sync(warm_up, rec)
            tools = {t.name: t for t in contract_tools(rec, default)}
            yield ServerState(recommender=rec, tools=tools)
        finally:
            if owned:
                rec.close()

    server: MCPServer[ServerState] = MCPServer(
        name,
        instructions="Call suggest_content after user turns that show a need; when its "
                     "result is not surfaced, say nothing about suggestions.",
        lifespan=lifespan,
    )
    for contract, hints in (
        (SuggestContentTool, ToolAnnotations(readOnlyHint=False, idempotentHint=False,
                                             openWorldHint=False)),
        (RecordFeedbackTool, ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                             openWorldHint=False)),
    ):
        server.add_tool(
            _tool_function(contract, default, identity_headers),
            name=contract.name,
            description=contract.description,
            annotations=hints,
        )
    return server


def _tool_function(contract: type[ContractTool], default: ToolContext,
                   identity_headers: bool) -> Callable[..., CallToolResult]:
    """A function whose signature publishes the contract's schema but leaves validation to
    the contract, so bad arguments come back as a structured ``ToolError`` like everywhere
    else (the SDK would answer its own text)."""
    name = contract.name

    def tool(ctx: Context, **arguments: Any) -> CallToolResult:
        state: ServerState = ctx.request_context.lifespan_context
        context = _context(ctx, default) if identity_headers else default
        # Arguments the model left out arrive as None; omit them so defaults apply.
        given = {k: v for k, v in arguments.items() if v is not None}
        result = state.tools[name].call(given, context)
        payload = result.model_dump(mode="json")
        return CallToolResult(
            content=[TextContent(type="text", text=json.dumps(payload))],
            structured_content=payload,
            is_error=bool(payload.get("error")),
        )

    properties = strict_schema(contract.input_model)["properties"]
    params = [inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)]
    annotations: dict[str, Any] = {"ctx": Context}
    for field, info in contract.input_model.model_fields.items():
        annotation = Annotated[Any, WithJsonSchema(properties[field])]
        default_value = inspect.Parameter.empty if info.is_required() else None
        params.append(inspect.Parameter(field, inspect.Parameter.KEYWORD_ONLY,
                                        annotation=annotation, default=default_value))
        annotations[field] = annotation
    returns = Annotated[CallToolResult, contract.output_model]
    tool.__signature__ = inspect.Signature(params, return_annotation=returns)  # type: ignore[attr-defined]
    tool.__annotations__ = annotations | {"return": returns}
    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = contract.description
    return tool


def _context(ctx: Context, default: ToolContext) -> ToolContext:
    headers = ctx.headers or {}
    update = {field: headers[h] for field, h in IDENTITY_HEADERS.items() if headers.get(h)}
    return ToolContext.model_validate(default.model_dump() | update) if update else default


def run_server(
    recommender: Recommender,
    *,
    transport: Literal["stdio", "streamable-http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    user_id: str | None = None,
    tenant: str | None = None,
    conversation_id: str | None = None,
) -> None:
    """Serve until interrupted (``convrec serve mcp``). Over streamable HTTP, the endpoint is
    ``http://HOST:PORT/mcp`` and the identity headers are honoured."""
    server = create_mcp_server(recommender, user_id=user_id, tenant=tenant,
                               conversation_id=conversation_id,
                               identity_headers=transport == "streamable-http")
    if transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=host, port=port)
