"""Talk to ``convrec serve mcp`` over stdio with the MCP SDK's client.

    python examples/mcp_client.py [WORKSPACE]

The server is started as a subprocess; ``--user`` is how the host injects the user id (the
model never chooses it). Tools answer structured content that matches their output schema.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from typing import Any

from mcp import ClientSession, StdioServerParameters, stdio_client

from convrec import Recommender
from convrec.world import item_paths


async def session_demo(workspace: str, user_id: str = "demo-user") -> dict[str, Any]:
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "convrec", "--workspace", workspace, "serve", "mcp", "--user", user_id],
        env={"HF_HUB_OFFLINE": "1", "PATH": os.environ.get("PATH", "")},
    )
    async with stdio_client(server) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        print("tools:", [t.name for t in tools.tools])
        result = await session.call_tool("suggest_content", {
            "conversation": [{"role": "user", "content": "Someone logged into my account "
                              "and changed my password, what do I do?"}],
            "k": 2,
        })
        found = result.structured_content or {}
        for s in found.get("suggestions", []):
            print(f"  {s['title']}  {s['url']}\n    why: {s['reason']}")
        feedback = None
        if found.get("suggestions"):
            done = await session.call_tool("record_feedback", {
                "item_id": found["suggestions"][0]["id"], "action": "clicked"})
            feedback = done.structured_content
            print("feedback:", feedback)
        return {"suggest": found, "feedback": feedback}


def main(workspace: str | None = None) -> None:
    workspace = workspace or tempfile.mkdtemp(prefix="convrec-")
    with Recommender(workspace=workspace) as rec:  # the server does not ingest: do it first
        rec.ingest(item_paths())
    asyncio.run(session_demo(workspace))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
