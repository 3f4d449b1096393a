"""The token estimate every part of agentkeel shares: four characters a token.

``ScriptedModel`` reports usage with it, budgets estimate a call's prompt with it before the call, compaction
measures a view with it: the same count everywhere, so a budget's estimate of a scripted run is exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentkeel.core.messages import Conversation, Message, ModelRequest, ToolCall, ToolSchema

CHARS_PER_TOKEN = 4


def message_chars(message: Message) -> int:
    """A message's size: its text, or a tool result's content, plus the tool calls it asks for."""
    if message.kind == "tool_result":
        return len(message.content)
    if message.kind == "assistant":
        return len(message.text) + calls_chars(message.tool_calls)
    return len(message.text)


def calls_chars(calls: Sequence[ToolCall]) -> int:
    """Tool calls' size: names, keys, string values, 8 for any other value, 6 per argument for the punctuation."""
    chars = 0
    for call in calls:
        chars += len(call.name)
        arguments = call.arguments
        if isinstance(arguments, str):
            chars += len(arguments)
        else:
            for key, value in arguments.items():
                chars += len(key) + (len(value) if isinstance(value, str) else 8) + 6
    return chars


def tools_chars(tools: Sequence[ToolSchema]) -> int:
    """The size of the tool schemas a request offers."""
    return sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in tools)


def estimate_input_tokens(request: ModelRequest) -> int:
    """The prompt's size at four characters a token (what ``ScriptedModel`` reports). Over a
    :class:`Conversation` the messages' size is kept in its memo and only new messages are measured, so a step
    costs O(new messages). A plain list (the compacted view, rebuilt every step) is measured whole, which costs
    what building it did."""
    messages = request.messages
    if isinstance(messages, Conversation):
        memo = messages.memo
        figures: list[int] | None = memo.get(_MEMO_KEY)
        if figures is None or figures[0] > len(messages):  # new, or rewritten (compacted): measure it again
            figures = memo[_MEMO_KEY] = [0, 0]
        seen, chars = figures
        if seen < len(messages):
            chars += sum(message_chars(m) for m in messages[seen:])
            figures[0], figures[1] = len(messages), chars
        tools_size = _memo_tools_chars(request.tools, memo)
    else:
        chars = sum(message_chars(m) for m in messages)
        tools_size = _memo_tools_chars(request.tools, None)
    return max(1, (chars + len(request.instructions) + tools_size) // CHARS_PER_TOKEN)


_MEMO_KEY = "tokens.prompt"
_TOOLS_KEY = "tokens.tools"


def _memo_tools_chars(tools: Sequence[ToolSchema], memo: dict[str, Any] | None) -> int:
    cached = memo.get(_TOOLS_KEY) if memo is not None else None
    if cached is not None and cached[0] is tools:  # the agent sends the same tuple every step
        return int(cached[1])
    size = tools_chars(tools)
    if memo is not None:
        memo[_TOOLS_KEY] = (tools, size)
    return size
