"""Latency of one ``suggest_content`` call through each adapter, against a direct call.

    python benchmarks/adapter_latency.py [--workspace WS] [-n 50] [--warmup 5] [--json out.json]

Same engine, same conversation, same k for every path, and no user or conversation id, so no
path writes history and each does the same work (encode the turns, query the index, rank):

    direct      Recommender.suggest
    contract    SuggestContentTool.call (validation, limits, output model)
    langchain   StructuredTool.invoke with a ToolCall (-> ToolMessage with artifact)
    openai      OpenAIToolDispatcher.run on a Chat Completions tool call (JSON in and out)
    mcp         MCP in-memory client session -> MCPServer (structured content)
    http        httpx -> uvicorn on 127.0.0.1 -> FastAPI (keep-alive connection)

Prints a table and one JSON object: median and p95 in ms, and the median overhead over
direct. The workspace defaults to a temporary folder with the example world ingested.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

CONVERSATION = [
    {"role": "user", "content": "Hi, I ordered a sleeping pad nine days ago and it hasn't come."},
    {"role": "assistant", "content": "Sorry about that! Let me check the tracking for you."},
    {"role": "user", "content": "It has said 'label created' since the day it shipped."},
]
ARGS: dict[str, Any] = {"conversation": CONVERSATION, "k": 3}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


class BackgroundLoop:
    """An event loop in a thread, so an async client can be timed call by call like the
    others (the hop between threads costs microseconds)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()


async def _wait(future: asyncio.Future[Any]) -> Any:
    return await future


def mcp_path(rec: Any, stack: ExitStack) -> Callable[[], None]:
    from mcp import Client

    from convrec.adapters.mcp import create_mcp_server

    loop = BackgroundLoop()
    stack.callback(loop.close)
    server = create_mcp_server(rec)
    opened: asyncio.Future[Client] = loop.loop.create_future()
    closing = asyncio.Event()

    async def session() -> None:  # anyio scopes must open and close in the same task
        async with Client(server) as client:
            opened.set_result(client)
            await closing.wait()

    done = asyncio.run_coroutine_threadsafe(session(), loop.loop)
    client = loop.run(_wait(opened))
    stack.callback(done.result)
    stack.callback(lambda: loop.loop.call_soon_threadsafe(closing.set))

    def call() -> None:
        result = loop.run(client.call_tool("suggest_content", ARGS))
        assert not result.is_error, result
    return call


def http_path(rec: Any, stack: ExitStack) -> Callable[[], None]:
    import httpx
    import uvicorn

    from convrec.adapters.http import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(rec), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop() -> None:
        server.should_exit = True
        thread.join()
    stack.callback(stop)
    client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}"))

    def call() -> None:
        client.post("/v1/suggest", json=ARGS).raise_for_status()
    return call


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=None)
    parser.add_argument("-n", type=int, default=50, help="timed calls per adapter")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=10,
                        help="interleave the adapters in this many rounds")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    opts = parser.parse_args(argv)

    from convrec import Recommender
    from convrec.adapters.langchain import suggest_content_tool
    from convrec.adapters.openai import OpenAIToolDispatcher
    from convrec.tool import SuggestContentTool, SuggestOutput
    from convrec.world import item_paths

    rec = Recommender(workspace=opts.workspace or tempfile.mkdtemp(prefix="convrec-bench-"))
    rec.ingest(item_paths())
    contract = SuggestContentTool(rec)
    lc_tool = suggest_content_tool(rec)
    dispatcher = OpenAIToolDispatcher(rec)
    tool_call = {"type": "tool_call", "id": "c1", "name": "suggest_content", "args": ARGS}
    oa_call = {"id": "c1", "type": "function",
               "function": {"name": "suggest_content", "arguments": json.dumps(ARGS)}}

    def contract_call() -> None:
        assert isinstance(contract.call(ARGS), SuggestOutput)

    with ExitStack() as stack:
        paths: dict[str, Callable[[], Any]] = {
            "direct": lambda: rec.suggest(CONVERSATION, k=3),
            "contract": contract_call,
            "langchain": lambda: lc_tool.invoke(tool_call),
            "openai": lambda: dispatcher.run(oa_call),
            "mcp": mcp_path(rec, stack),
            "http": http_path(rec, stack),
        }
        for call in paths.values():
            timed(call, opts.warmup)
        # Round robin, so load from other processes on the machine hits every path alike.
        times: dict[str, list[float]] = {name: [] for name in paths}
        per_round = max(1, opts.n // opts.rounds)
        while len(times["direct"]) < opts.n:
            batch = min(per_round, opts.n - len(times["direct"]))
            for name, call in paths.items():
                times[name] += timed(call, batch)
    rows = {name: {"median_ms": round(statistics.median(t), 2), "p95_ms": round(p95(t), 2)}
            for name, t in times.items()}
    base = rows["direct"]["median_ms"]
    for row in rows.values():
        row["overhead_ms"] = round(row["median_ms"] - base, 2)

    print(f"suggest_content latency: {opts.n} calls per adapter, interleaved in "
          f"{opts.rounds} rounds, after {opts.warmup} warm-up calls each\n")
    print(f"{'adapter':<10} {'median ms':>10} {'p95 ms':>9} {'overhead ms':>12}")
    for name, row in rows.items():
        print(f"{name:<10} {row['median_ms']:>10.2f} {row['p95_ms']:>9.2f} "
              f"{row['overhead_ms']:>+12.2f}")
    report = {"n": opts.n, "warmup": opts.warmup, "rounds": opts.rounds, "adapters": rows}
    print("\n" + json.dumps(report))
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    rec.close()
    return report


if __name__ == "__main__":
    main()
