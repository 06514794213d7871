"""Every example runs offline, on an ingested copy of the example world."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def workspace(world_workspace, tmp_path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(world_workspace, root)
    return root


def child_env(workspace: Path) -> dict[str, str]:
    return os.environ | {"CONVREC_WORKSPACE": str(workspace), "HF_HUB_OFFLINE": "1",
                         "TOKENIZERS_PARALLELISM": "false"}


def test_langchain_agent(world):
    example = load("langchain_agent")
    state = example.ask(world, "My card keeps getting declined at checkout, what can I do?",
                        user_id="u-agent", conversation_id="chat-agent")
    tool_message, answer = state["messages"][-2:]
    assert tool_message.type == "tool" and tool_message.artifact["surfaced"]
    top = tool_message.artifact["suggestions"][0]
    assert top["id"] == "payment-failed" and top["url"] in answer.text
    assert world.history("u-agent").impressions  # the bound user, not one the model chose


def test_langchain_agent_main(workspace, capsys):
    load("langchain_agent").main(str(workspace))
    out = capsys.readouterr().out
    assert "human:" in out and "tool:" in out and "https://help.fernhill.example" in out


def test_support_chatbot(world):
    example = load("support_chatbot")
    lines = example.chat(world, example.SCRIPT, conversation_id="chat-bot")
    assert lines[1].startswith("bot:")  # small talk: nothing surfaced after the first turn
    assert not any("suggested" in line for line in lines[:2])
    assert any("clicked" in line for line in lines) and any("dismissed" in line for line in lines)
    history = world.history(example.USER)
    assert sorted(e.type for e in history.events) == ["click", "dismiss"]
    assert len(history.messages) == 2 * len(example.SCRIPT)  # each turn stored once
    dismissed = next(e.item_id for e in history.events if e.type == "dismiss")
    again = world.suggest("User: Do you sell a new Hearth kettle?", user_id=example.USER)
    assert dismissed not in {s.id for s in again.suggestions}


def test_transcript_python(workspace, capsys):
    load("transcript_suggest").main(str(workspace))
    assert "cast-iron-care" in capsys.readouterr().out


def test_transcript_cli(workspace):
    done = subprocess.run(
        [sys.executable, "-m", "convrec", "suggest", "--transcript",
         str(EXAMPLES / "transcript.txt"), "--format", "json"],
        env=child_env(workspace), capture_output=True, text=True, timeout=300, check=True)
    assert '"id": "cast-iron-care"' in done.stdout


def test_mcp_client(workspace):
    example = load("mcp_client")
    result = asyncio.run(example.session_demo(str(workspace), user_id="u-mcp"))
    assert result["suggest"]["suggestions"][0]["id"] == "account-security"
    assert result["feedback"]["recorded"] is True


def test_http_api_script(workspace):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = child_env(workspace) | {"PYTHON": sys.executable, "PORT": str(port)}
    done = subprocess.run(["bash", str(EXAMPLES / "http_api.sh"), str(workspace)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"status":"ok"' in done.stdout
    assert '"id":"shipping-delays"' in done.stdout
    assert '"recorded":true' in done.stdout
    assert '"code":"invalid_arguments"' in done.stdout


def test_adapter_latency_benchmark_runs(workspace, capsys):
    spec = importlib.util.spec_from_file_location(
        "adapter_latency", EXAMPLES.parent / "benchmarks" / "adapter_latency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    report = bench.main(["--workspace", str(workspace), "-n", "2", "--warmup", "1",
                         "--rounds", "1"])
    assert set(report["adapters"]) == {"direct", "contract", "langchain", "openai", "mcp", "http"}
    assert all(row["median_ms"] > 0 for row in report["adapters"].values())
