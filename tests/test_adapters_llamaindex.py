"""LlamaIndex adapter, plus what every adapter shares: light imports and missing extras."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from convrec.adapters.llamaindex import llamaindex_tools
from convrec.tool import SuggestOutput, ToolError

LATE = [{"role": "user", "content": "My order is a week late and the tracking hasn't moved."}]


def test_function_tool_metadata_converts_to_openai(world):
    suggest, feedback = llamaindex_tools(world, user_id="u-1")
    spec = suggest.metadata.to_openai_tool()  # refuses descriptions over 1,024 characters
    assert spec["function"]["name"] == "suggest_content"
    assert "user_id" not in spec["function"]["parameters"]["properties"]
    assert feedback.metadata.name == "record_feedback"


def test_call_gives_text_content_and_the_model_as_raw_output(world):
    suggest, feedback = llamaindex_tools(world, user_id="u-1", conversation_id="chat-1")
    output = suggest(conversation=LATE, k=2)
    assert isinstance(output.raw_output, SuggestOutput) and output.raw_output.surfaced
    assert "shipping-delays" in output.content and "https://" in output.content
    error = suggest(conversation=LATE, k=0, user_id="intruder").raw_output
    assert isinstance(error, ToolError) and error.code == "reserved_argument"
    recorded = feedback(item_id="shipping-delays", action="clicked")
    assert recorded.raw_output.recorded and recorded.content.startswith("Recorded clicked")
    assert [e.type for e in world.history("u-1").events] == ["click"]


def test_importing_the_adapters_package_loads_no_framework():
    code = ("import sys, convrec.adapters; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'langchain_core', 'fastapi', 'mcp', 'llama_index', 'uvicorn', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize(("module", "framework", "extra"), [
    ("convrec.adapters.langchain", "langchain_core", "langchain"),
    ("convrec.adapters.mcp", "mcp", "mcp"),
    ("convrec.adapters.http", "fastapi", "http"),
    ("convrec.adapters.llamaindex", "llama_index", "llamaindex"),
])
def test_missing_framework_names_the_extra(monkeypatch, module, framework, extra):
    from convrec.adapters import MissingExtraError

    for name in [m for m in sys.modules if m == framework or m.startswith(framework + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, framework, None)  # makes `import framework` fail
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(MissingExtraError, match=rf"pip install 'convrec\[{extra}\]'"):
        importlib.import_module(module)
