"""``ScriptedModel``: a deterministic, offline model for tests, demos and reproducing bugs.

Give it a list of turns or a function of the request. With a list, the turn for a request is chosen by how many
model turns the conversation already holds, not by a counter: one script serves any number of runs, and a
resumed run gets exactly the turn it would have got.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentkeel.core.messages import (
    Conversation,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolSchema,
    Usage,
)
from agentkeel.core.tokens import calls_chars, tools_chars
from agentkeel.errors import ConfigError, ModelError

Turn = ModelResponse | str
Script = Sequence[Turn] | Callable[[ModelRequest], Turn | Awaitable[Turn]]


def reply(text: str) -> ModelResponse:
    """A final answer."""
    return ModelResponse(text=text, stop_reason="end_turn")


def call(name: str, /, **arguments: Any) -> ModelResponse:
    """A turn that calls one tool."""
    return ModelResponse(tool_calls=(ToolCall(id="", name=name, arguments=arguments),), stop_reason="tool_use")


def calls(*requested: tuple[str, dict[str, Any] | str], text: str = "") -> ModelResponse:
    """A turn that calls several tools (``(name, arguments)`` pairs; arguments may be raw JSON text)."""
    tool_calls = tuple(ToolCall(id="", name=name, arguments=args) for name, args in requested)
    return ModelResponse(text=text, tool_calls=tool_calls, stop_reason="tool_use")


class ScriptedModel:
    """A model that plays a script. Usage is estimated at four characters a token so that figures are real."""

    def __init__(self, script: Script, *, latency_s: float = 0.0, name: str = "scripted") -> None:
        if isinstance(script, (str, bytes)) or not (callable(script) or isinstance(script, Sequence)):
            raise ConfigError("ScriptedModel takes a list of turns or a function of the request")
        self.name = name
        self._script = script
        self._latency_s = latency_s
        self._tools_size: tuple[object, int] | None = None

    async def respond(self, request: ModelRequest) -> ModelResponse:
        figures = self._measure(request)
        turns = figures[1]
        step = turns + 1
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if callable(self._script):
            turn = self._script(request)
            if not isinstance(turn, (ModelResponse, str)) and inspect.isawaitable(turn):
                turn = await turn
        else:
            if turns >= len(self._script):
                raise ModelError(f"the scripted model has no turn {step}: its script holds {len(self._script)} turns")
            turn = self._script[turns]
        response = reply(turn) if isinstance(turn, str) else turn
        if not isinstance(response, ModelResponse):
            raise ModelError(f"the script returned {type(response).__name__}; return a ModelResponse or a str")
        prompt_chars = figures[2] + len(request.instructions) + self._tools_chars(request.tools)
        response, calls_size = _complete(response, max(1, prompt_chars // 4), step)
        figures[3], figures[4] = response.tool_calls, calls_size  # its size, counted once: see _measure
        return response

    def _measure(self, request: ModelRequest) -> list[Any]:
        """``[messages seen, model turns, characters, the last calls answered, their size]``. Incremental over a
        :class:`Conversation`, whose memo keeps the figures, so a long run costs the same per turn as a short one."""
        messages = request.messages
        figures: list[Any] | None = None
        if isinstance(messages, Conversation):
            figures = messages.memo.get(_MEMO_KEY)
            if figures is None or figures[0] > len(messages):  # new, or rewritten (compacted): count it again
                figures = messages.memo[_MEMO_KEY] = [0, 0, 0, (), 0]
        else:
            figures = [0, 0, 0, (), 0]
        seen, turns, chars, last_calls, last_size = figures
        for message in messages[seen:] if seen else messages:
            if message.kind == "tool_result":
                chars += len(message.content)
            elif message.kind == "assistant":
                turns += 1
                calls = message.tool_calls
                chars += len(message.text) + (last_size if calls is last_calls else calls_chars(calls))
            else:
                chars += len(message.text)
        figures[0], figures[1], figures[2] = len(messages), turns, chars
        return figures

    def _tools_chars(self, tools: Sequence[ToolSchema]) -> int:
        cached = self._tools_size
        if cached is not None and cached[0] is tools:
            return cached[1]
        size = tools_chars(tools)
        self._tools_size = (tools, size)
        return size


_MEMO_KEY = "scripted.measure"


def _complete(response: ModelResponse, input_tokens: int, step: int) -> tuple[ModelResponse, int]:
    """Fill in what a real provider would: call ids, usage, the model name. Also returns the calls' size."""
    tool_calls = response.tool_calls
    if len(tool_calls) == 1 and not tool_calls[0].id:  # the common turn: one call
        only = tool_calls[0]
        tool_calls = (ToolCall(id=f"call_{step}_1", name=only.name, arguments=only.arguments),)
    elif len(tool_calls) > 1 and any(not call.id for call in tool_calls):
        tool_calls = tuple(
            call if call.id else ToolCall(id=f"call_{step}_{index}", name=call.name, arguments=call.arguments)
            for index, call in enumerate(tool_calls, start=1)
        )
    calls_size = calls_chars(tool_calls)
    usage = response.usage
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        usage = Usage(input_tokens=input_tokens, output_tokens=max(1, (len(response.text) + calls_size) // 4))
    completed = ModelResponse(
        text=response.text,
        tool_calls=tool_calls,
        stop_reason=response.stop_reason,
        usage=usage,
        model=response.model or "scripted",
    )
    return completed, calls_size
