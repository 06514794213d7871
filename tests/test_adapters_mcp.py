"""MCP adapter: an in-memory client session and a real ``convrec serve mcp`` over stdio."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys

import pytest
from mcp import Client, ClientSession, StdioServerParameters, stdio_client

from convrec.adapters.mcp import create_mcp_server
from convrec.history import HistoryStore
from convrec.tool import FeedbackOutput, SuggestOutput

pytestmark = pytest.mark.asyncio

LATE = [{"role": "user", "content": "My order is a week late and the tracking hasn't moved."}]


@pytest.fixture()
def server(world):
    return create_mcp_server(world, user_id="u-1", conversation_id="chat-1")


async def test_tools_publish_input_and_output_schemas(server):
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"suggest_content", "record_feedback"}
    suggest = tools["suggest_content"]
    assert suggest.input_schema["required"] == ["conversation"]
    assert set(suggest.input_schema["properties"]) == {"conversation", "k", "kinds", "filters",
                                                       "exclude_ids"}
    assert suggest.input_schema["properties"]["k"]["anyOf"][0]["maximum"] == 10
    assert "suggestions" in suggest.output_schema["properties"]
    assert "recorded" in tools["record_feedback"].output_schema["properties"]
    assert len(suggest.description) < 1024


async def test_suggest_answers_structured_content(world, server):
    async with Client(server) as client:
        result = await client.call_tool("suggest_content", {"conversation": LATE, "k": 2})
    assert not result.is_error
    out = SuggestOutput.model_validate(result.structured_content)
    assert out.surfaced and out.suggestions[0].id == "shipping-delays"
    assert result.content[0].text  # a text copy for clients without structured content
    impressions = world.history("u-1").impressions
    assert [i.item_id for i in impressions] == [s.id for s in out.suggestions]


@pytest.mark.parametrize(("args", "code"), [
    ({"conversation": LATE, "k": 0}, "invalid_arguments"),
    ({"conversation": LATE, "kinds": ["video"]}, "invalid_arguments"),
    ({"conversation": [{"role": "user", "content": "x" * 25_000}]}, "conversation_too_large"),
])
async def test_bad_arguments_are_structured_errors(server, args, code):
    async with Client(server) as client:
        result = await client.call_tool("suggest_content", args)
    assert result.is_error
    assert result.structured_content["code"] == code
    assert result.structured_content["details"]


async def test_injected_user_cannot_be_overridden(world, server):
    async with Client(server) as client:
        result = await client.call_tool("record_feedback", {
            "item_id": "shipping-delays", "action": "clicked", "user_id": "intruder"})
    # The SDK drops arguments outside the schema: the event is the injected user's.
    assert FeedbackOutput.model_validate(result.structured_content).recorded
    assert [e.type for e in world.history("u-1").events] == ["click"]
    assert world.history("intruder").events == []


async def test_stdio_server_subprocess(world_workspace, tmp_path):
    workspace = tmp_path / "ws"
    shutil.copytree(world_workspace, workspace)
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "convrec", "serve", "mcp", "--user", "u-stdio"],
        env={"CONVREC_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "PATH": os.environ.get("PATH", "")},
    )
    with open(tmp_path / "stderr.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            names = {t.name for t in (await session.list_tools()).tools}
            suggest = await session.call_tool("suggest_content", {"conversation": LATE})
            bad = await session.call_tool("suggest_content", {"conversation": LATE, "k": 50})
            feedback = await session.call_tool("record_feedback",
                                               {"item_id": "shipping-delays",
                                                "action": "dismissed"})
    assert names == {"suggest_content", "record_feedback"}
    assert suggest.structured_content["surfaced"] is True
    assert bad.is_error and bad.structured_content["code"] == "invalid_arguments"
    assert feedback.structured_content["event_type"] == "dismiss"
    with HistoryStore(workspace / "history.sqlite") as store:
        assert [e.type for e in store.history("u-stdio").events] == ["dismiss"]


async def test_streamable_http_takes_identity_from_host_headers(world):
    import threading

    import httpx2
    import uvicorn
    from mcp.client.streamable_http import streamable_http_client

    app = create_mcp_server(world, user_id="u-default",
                            identity_headers=True).streamable_http_app()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        headers = {"X-User-Id": "u-header", "X-Conversation-Id": "chat-h"}
        async with httpx2.AsyncClient(headers=headers) as http, \
                streamable_http_client(f"http://127.0.0.1:{port}/mcp",
                                       http_client=http) as (read, write), \
                ClientSession(read, write) as session:
            await session.initialize()
            result = await session.call_tool("record_feedback", {"item_id": "shipping-delays",
                                                                 "action": "purchased"})
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert result.structured_content["recorded"] is True
    (event,) = world.history("u-header").events
    assert (event.type, event.conversation_id) == ("purchase", "chat-h")
    assert world.history("u-default").events == []
