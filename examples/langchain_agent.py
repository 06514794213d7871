"""Register convrec's tools in a LangChain agent (``langchain.agents.create_agent``).

Runs without an API key: ``ScriptedChatModel`` stands in for the LLM. It calls
``suggest_content`` once, then answers from the tool's result. To use a real model, replace
the line that builds it with these two:

    # from langchain.chat_models import init_chat_model
    # model = init_chat_model("openai:gpt-4.1-mini")   # or "anthropic:claude-sonnet-4-5", ...

    python examples/langchain_agent.py [WORKSPACE]
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from convrec import Recommender
from convrec.adapters.langchain import langchain_tools
from convrec.world import item_paths

SYSTEM = ("You are Fernhill Supply's support assistant. After a user turn that shows a need, "
          "call suggest_content; mention its suggestions only when it surfaced some.")


class ScriptedChatModel(BaseChatModel):
    """A stand-in LLM: the first turn calls ``suggest_content``, the second answers."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:
        return self

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        last = messages[-1]
        if isinstance(last, ToolMessage):
            found = (last.artifact or {}).get("suggestions") or []
            reply = "Sorry about that. Let me know if there's anything else I can check."
            if found:
                reply = f"Sorry about that! This should help: {found[0]['title']} {found[0]['url']}"
            message = AIMessage(content=reply)
        else:
            chat = [{"role": "user" if isinstance(m, HumanMessage) else "assistant",
                     "content": m.text}
                    for m in messages if isinstance(m, HumanMessage | AIMessage)]
            message = AIMessage(content="", tool_calls=[{
                "name": "suggest_content", "id": "call_1",
                "args": {"conversation": chat, "k": 2, "kinds": None, "filters": None,
                         "exclude_ids": None},
            }])
        return ChatResult(generations=[ChatGeneration(message=message)])


def ask(rec: Recommender, question: str, *, user_id: str = "demo-user",
        conversation_id: str | None = None) -> dict[str, Any]:
    """One agent turn; the user and conversation are bound by us, never by the model."""
    conversation_id = conversation_id or f"chat-{uuid.uuid4().hex[:8]}"
    model = ScriptedChatModel()
    tools = langchain_tools(rec, user_id=user_id, conversation_id=conversation_id)
    agent = create_agent(model, tools=tools, system_prompt=SYSTEM)
    return agent.invoke({"messages": [{"role": "user", "content": question}]})


def main(workspace: str | None = None) -> None:
    rec = Recommender(workspace=workspace or tempfile.mkdtemp(prefix="convrec-"))
    rec.ingest(item_paths())  # fast when already ingested: unchanged items are skipped
    state = ask(rec, "My card keeps getting declined at checkout, what can I do?")
    for message in state["messages"]:
        print(f"{message.type:>5}: {message.text}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
