"""``ScriptedModel``: a deterministic, offline model for tests, demos and reproducing bugs.

Give it a list of turns or a function of the request. With a list, the turn for a request is chosen by how many
model turns the conversation already holds, not by a counter: one script serves any number of runs, and a
resumed run gets exactly the turn it would have got.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentkeel.core.messages import ModelRequest, ModelResponse, ToolCall, Usage
from agentkeel.errors import ConfigError, ModelError

Turn = ModelResponse | str
Script = Sequence[Turn] | Callable[[ModelRequest], Turn | Awaitable[Turn]]


def reply(text: str) -> ModelResponse:
    """A final answer."""
    return ModelResponse(text=text, stop_reason="end_turn")


def call(name: str, /, **arguments: Any) -> ModelResponse:
    """A turn that calls one tool."""
    return calls((name, arguments))


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

    async def respond(self, request: ModelRequest) -> ModelResponse:
        step = sum(1 for message in request.messages if message.kind == "assistant")
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        if callable(self._script):
            turn = self._script(request)
            if isinstance(turn, Awaitable):
                turn = await turn
        else:
            if step >= len(self._script):
                raise ModelError(
                    f"the scripted model has no turn {step + 1}: its script holds {len(self._script)} turns"
                )
            turn = self._script[step]
        response = reply(turn) if isinstance(turn, str) else turn
        if not isinstance(response, ModelResponse):
            raise ModelError(f"the script returned {type(response).__name__}; return a ModelResponse or a str")
        return _complete(response, request, step + 1)


def _complete(response: ModelResponse, request: ModelRequest, step: int) -> ModelResponse:
    """Fill in what a real provider would: call ids, usage, the model name."""
    tool_calls = tuple(
        call if call.id else ToolCall(id=f"call_{step}_{index}", name=call.name, arguments=call.arguments)
        for index, call in enumerate(response.tool_calls, start=1)
    )
    usage = response.usage
    if usage.total_tokens == 0:
        usage = Usage(input_tokens=_estimate_tokens(request), output_tokens=_response_tokens(response))
    return ModelResponse(
        text=response.text,
        tool_calls=tool_calls,
        stop_reason=response.stop_reason,
        usage=usage,
        model=response.model or "scripted",
    )


def _estimate_tokens(request: ModelRequest) -> int:
    chars = len(request.instructions)
    for message in request.messages:
        if message.kind == "assistant":
            chars += len(message.text) + sum(len(c.name) + len(str(c.arguments)) for c in message.tool_calls)
        else:
            chars += len(message.text) if message.kind == "user" else len(message.content)
    chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in request.tools)
    return max(1, chars // 4)


def _response_tokens(response: ModelResponse) -> int:
    chars = len(response.text) + sum(len(c.name) + len(str(c.arguments)) for c in response.tool_calls)
    return max(1, chars // 4)
