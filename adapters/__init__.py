"""Adapters that expose convrec's tools to agent frameworks and servers.

Each adapter lives in its own module and imports its framework only when used, so
``import convrec.adapters`` stays cheap and a missing framework fails with the pip extra to
install (``pip install 'convrec[langchain]'``, ``[mcp]``, ``[http]``, ``[llamaindex]``)::

    from convrec.adapters import langchain_tools, openai_tools, create_mcp_server, create_app

The OpenAI adapter needs no extra: it only builds JSON and dispatches calls.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "MissingExtraError": "convrec.adapters._optional",
    "langchain_tools": "convrec.adapters.langchain",
    "suggest_content_tool": "convrec.adapters.langchain",
    "record_feedback_tool": "convrec.adapters.langchain",
    "openai_tools": "convrec.adapters.openai",
    "OpenAIToolDispatcher": "convrec.adapters.openai",
    "create_mcp_server": "convrec.adapters.mcp",
    "create_app": "convrec.adapters.http",
    "llamaindex_tools": "convrec.adapters.llamaindex",
}

__all__ = [
    "MissingExtraError",
    "OpenAIToolDispatcher",
    "create_app",
    "create_mcp_server",
    "langchain_tools",
    "llamaindex_tools",
    "openai_tools",
    "record_feedback_tool",
    "suggest_content_tool",
]

if TYPE_CHECKING:
    from convrec.adapters._optional import MissingExtraError
    from convrec.adapters.http import create_app
    from convrec.adapters.langchain import (
        langchain_tools,
        record_feedback_tool,
        suggest_content_tool,
    )
    from convrec.adapters.llamaindex import llamaindex_tools
    from convrec.adapters.mcp import create_mcp_server
    from convrec.adapters.openai import OpenAIToolDispatcher, openai_tools


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'convrec.adapters' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
