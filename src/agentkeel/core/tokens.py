"""The token estimate every part of agentkeel shares: four characters a token.

``ScriptedModel`` reports usage with it, budgets estimate a call's prompt with it before the call, compaction
measures a view with it: the same count everywhere, so a budget's estimate of a scripted run is exact.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from agentkeel.core.messages import Message, ToolCall, ToolSchema

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
