"""HTTP adapter: a FastAPI app serving the contract tools (``convrec serve http``).

    GET  /health         {"status": "ok", "version": ...}
    POST /v1/suggest     body: SuggestInput   -> SuggestOutput
    POST /v1/feedback    body: FeedbackInput  -> FeedbackOutput
    GET  /docs           OpenAPI documentation

The user, tenant and conversation come from the ``X-User-Id``, ``X-Tenant`` and
``X-Conversation-Id`` headers, which the host (the chat backend or a gateway in front of this
service) sets; a body that names them is refused (422, ``reserved_argument``). Errors answer
the contract's ``ToolError`` JSON: 422 for invalid arguments, 413 for an oversized
conversation, 404 for an unknown item, 400 when feedback has no user, 500 for a failure of
the engine (without a traceback).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

try:
    import uvicorn
    from fastapi import FastAPI, Header, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    from convrec.adapters._optional import missing_extra

    raise missing_extra("http", exc) from exc

import anyio.to_thread

import convrec
from convrec.tool import (
    SUGGEST_DESCRIPTION,
    ContractTool,
    FeedbackInput,
    FeedbackOutput,
    SuggestInput,
    SuggestOutput,
    ToolContext,
    ToolError,
    contract_tools,
    warm_up,
)

if TYPE_CHECKING:
    from convrec.recommender import Recommender

__all__ = ["create_app", "run_server"]

#: HTTP status of each error code.
STATUS = {
    "invalid_arguments": 422,
    "reserved_argument": 422,
    "conversation_too_large": 413,
    "unknown_item": 404,
    "unknown_tool": 404,
    "no_user": 400,
    "rejected": 409,
    "internal_error": 500,
}

UserId = Annotated[str | None, Header(alias="X-User-Id", min_length=1,
                                      description="Set by the host, not the end user.")]
Tenant = Annotated[str | None, Header(alias="X-Tenant", min_length=1)]
ConversationId = Annotated[str | None, Header(alias="X-Conversation-Id", min_length=1)]


def _error(error: ToolError) -> JSONResponse:
    return JSONResponse(error.model_dump(mode="json"), status_code=STATUS[error.code])


def create_app(recommender: Recommender | Callable[[], Recommender]) -> FastAPI:
    """The API on ``recommender`` (or on one built, warmed and closed by the app's lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = callable(recommender)
        rec: Recommender = recommender() if owned else recommender  # type: ignore[operator,assignment]
        await anyio.to_thread.run_sync(warm_up, rec)
        suggest, feedback = contract_tools(rec)
        app.state.tools = {suggest.name: suggest, feedback.name: feedback}
        try:
            yield
        finally:
            if owned:
                rec.close()

    app = FastAPI(
        title="convrec",
        version=convrec.__version__,
        summary="Suggest help articles and products for a live support conversation.",
        lifespan=lifespan,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        tool = "record_feedback" if request.url.path.endswith("feedback") else "suggest_content"
        return _error(_validation_error(exc, tool))

    async def run(request: Request, name: str, body: Any, context: ToolContext) -> Any:
        tool: ContractTool = request.app.state.tools[name]
        result = await anyio.to_thread.run_sync(tool.call, body, context)
        return _error(result) if isinstance(result, ToolError) else result

    responses: dict[int | str, dict[str, Any]] = {
        code: {"model": ToolError} for code in sorted(set(STATUS.values()))
    }

    @app.get("/health", summary="Liveness: the engine is loaded")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": convrec.__version__}

    @app.post("/v1/suggest", response_model=SuggestOutput, responses=responses,
              summary="Suggest articles and products for a conversation, or none",
              description=SUGGEST_DESCRIPTION)
    async def suggest(request: Request, body: SuggestInput, x_user_id: UserId = None,
                      x_tenant: Tenant = None, x_conversation_id: ConversationId = None) -> Any:
        context = ToolContext(user_id=x_user_id, tenant=x_tenant,
                              conversation_id=x_conversation_id)
        return await run(request, "suggest_content", body, context)

    @app.post("/v1/feedback", response_model=FeedbackOutput, responses=responses,
              summary="Record a click, dismissal, purchase or verdict on a suggestion")
    async def feedback(request: Request, body: FeedbackInput, x_user_id: UserId = None,
                       x_tenant: Tenant = None,
                       x_conversation_id: ConversationId = None) -> Any:
        context = ToolContext(user_id=x_user_id, tenant=x_tenant,
                              conversation_id=x_conversation_id)
        return await run(request, "record_feedback", body, context)

    return app


def _validation_error(exc: RequestValidationError, tool: str) -> ToolError:
    """FastAPI's validation error in the contract's shape, the ``body`` prefix dropped."""
    errors = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        loc = loc[1:] if loc[:1] == ("body",) else loc
        if err.get("type") == "json_invalid":  # loc is a character offset: name the body
            loc, err = ("(body)",), {**err, "msg": f"invalid JSON: {err.get('ctx', {})}"}
        errors.append({**err, "loc": loc})
    return ToolError.from_errors(errors, tool)


def run_server(recommender: Recommender, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve until interrupted (``convrec serve http``)."""
    uvicorn.run(create_app(recommender), host=host, port=port, log_level="info")
