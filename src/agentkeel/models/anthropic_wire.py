"""Between agentkeel's messages and Anthropic's Messages API, both ways. Pure: no I/O.

Requests are built as the API's own JSON (``POST /v1/messages``), not as the SDK's parameter types: the wire
format is versioned by Anthropic (``anthropic-version``) and stable, while the SDK's typed dictionaries change
from one release to the next. Responses are read from the SDK's parsed objects (``Message`` and the raw stream
events), whose names have been stable since the Messages API appeared.

The API's rules this module keeps:

* the system prompt is a top-level ``system`` field, not a message;
* roles alternate: neighbouring turns of one role are merged into one message, so the results of a turn's
  tool calls travel in ONE user message, as ``tool_result`` blocks that come before any text;
* a ``tool_use`` block carries its input as a JSON object: arguments the model once sent as text that does not
  parse are sent back as ``{}`` (the engine already told the model its JSON was bad, in that call's result);
* no message may be empty, and no text block blank (whitespace only).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from anthropic.types import (
    InputJSONDelta,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)
from anthropic.types import Message as WireMessage

from agentkeel.core.messages import (
    Message,
    ModelRequest,
    ModelResponse,
    StopReason,
    ToolCall,
    ToolSchema,
    Usage,
)
from agentkeel.errors import ModelError

STOP_REASONS: dict[str, StopReason] = {
    "end_turn": "end_turn",
    "tool_use": "tool_use",
    "max_tokens": "max_tokens",
    "stop_sequence": "stop_sequence",
    "refusal": "content_filter",
    # The context window filled up while the model was writing: its output was cut short, as with max_tokens.
    "model_context_window_exceeded": "max_tokens",
    # pause_turn (a server tool's long turn) and any reason newer than this table: "other".
}

# -- requests -------------------------------------------------------------------------------------------------


def request_body(
    request: ModelRequest, *, model: str, max_tokens: int, temperature: float | None = None
) -> dict[str, Any]:
    """The JSON body of ``POST /v1/messages`` for one turn (without ``stream``)."""
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_output_tokens or max_tokens,
        "messages": wire_messages(request.messages),
    }
    if request.instructions:
        body["system"] = request.instructions
    if request.tools:
        body["tools"] = [wire_tool(schema) for schema in request.tools]
    chosen = request.temperature if request.temperature is not None else temperature
    if chosen is not None:
        body["temperature"] = chosen
    return body


def wire_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """The conversation as alternating ``user`` and ``assistant`` messages of content blocks."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        role, blocks = _blocks(message)
        if not blocks:
            continue  # an empty turn (a model that said nothing): the API refuses empty content
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    for item in wire:
        if item["role"] == "user" and len(item["content"]) > 1:
            # Tool results must open the user message that answers a tool_use turn (stable: order kept).
            item["content"].sort(key=lambda block: block["type"] != "tool_result")
    return wire


def wire_tool(schema: ToolSchema) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": schema.name, "input_schema": schema.parameters}
    if schema.description:
        tool["description"] = schema.description
    return tool


def tool_input(arguments: dict[str, Any] | str) -> dict[str, Any]:
    """A call's arguments as the JSON object a ``tool_use`` block needs; ``{}`` for text that is not one."""
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = json.loads(arguments)
    except (ValueError, RecursionError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if message.kind == "user":
        return "user", [{"type": "text", "text": message.text}] if message.text.strip() else []
    if message.kind == "tool_result":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.call_id, "is_error": message.is_error}
        if message.content:
            result["content"] = message.content
        return "user", [result]
    blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text.strip() else []
    blocks.extend(
        {"type": "tool_use", "id": call.id, "name": call.name, "input": tool_input(call.arguments)}
        for call in message.tool_calls
    )
    return "assistant", blocks


# -- responses ------------------------------------------------------------------------------------------------


def from_message(message: WireMessage) -> ModelResponse:
    """A non-streamed response: text blocks joined, ``tool_use`` blocks as calls, usage with the cache."""
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append(ToolCall(id=block.id, name=block.name, arguments=_arguments(block.input)))
        # thinking and server-tool blocks carry nothing the engine acts on
    usage = message.usage
    return ModelResponse(
        text="".join(texts),
        tool_calls=tuple(calls),
        stop_reason=stop_reason(message.stop_reason),
        usage=usage_of(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_write=usage.cache_creation_input_tokens,
            cache_read=usage.cache_read_input_tokens,
        ),
        model=message.model,
    )


def stop_reason(reason: str | None) -> StopReason:
    return STOP_REASONS.get(reason or "", "other")


def usage_of(*, input_tokens: int, output_tokens: int, cache_write: int | None, cache_read: int | None) -> Usage:
    """Anthropic counts cache reads and writes apart from ``input_tokens``; agentkeel's input includes them."""
    written, read = cache_write or 0, cache_read or 0
    return Usage(
        input_tokens=input_tokens + written + read,
        output_tokens=output_tokens,
        cache_read_tokens=read,
        cache_write_tokens=written,
    )


def _arguments(value: object) -> dict[str, Any] | str:
    """A ``tool_use`` input that is not a JSON object goes on as text, so that validation tells the model."""
    if isinstance(value, dict):
        return value
    return json.dumps(value)


# -- streams --------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, slots=True)
class _Block:
    kind: str
    """``text`` or ``tool_use``."""
    parts: list[str] = field(default_factory=list)
    """Text deltas, or the fragments of a tool input's JSON."""
    id: str = ""
    name: str = ""
    start_input: object = None
    """A tool input given whole in ``content_block_start`` (usually ``{}``, filled by the deltas)."""


def assemble(events: Iterable[RawMessageStreamEvent]) -> ModelResponse:
    """The response a stream of server-sent events adds up to, the same as the non-streamed call's.

    The sequence is ``message_start``, then for each content block ``content_block_start``, its deltas
    (``text_delta``, or ``input_json_delta`` fragments of a tool input) and ``content_block_stop``, then
    ``message_delta`` (the stop reason and cumulative usage) and ``message_stop``. A tool input whose fragments do
    not add up to a JSON object (the output was cut off, say) is kept as text, which the engine turns into a
    message the model can act on. A stream without ``message_stop`` was cut: retryable.
    """
    blocks: dict[int, _Block] = {}
    model, reason = "", None
    input_tokens = output_tokens = 0
    cache_write: int | None = None
    cache_read: int | None = None
    stopped = False
    for event in events:
        if isinstance(event, RawMessageStartEvent):
            message = event.message
            model, usage = message.model, message.usage
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            cache_write, cache_read = usage.cache_creation_input_tokens, usage.cache_read_input_tokens
        elif isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if isinstance(block, TextBlock):
                blocks[event.index] = _Block(kind="text", parts=[block.text])
            elif isinstance(block, ToolUseBlock):
                blocks[event.index] = _Block(kind="tool_use", id=block.id, name=block.name, start_input=block.input)
        elif isinstance(event, RawContentBlockDeltaEvent):
            known = blocks.get(event.index)
            delta = event.delta
            if known is not None and isinstance(delta, TextDelta):
                known.parts.append(delta.text)
            elif known is not None and isinstance(delta, InputJSONDelta):
                known.parts.append(delta.partial_json)
        elif isinstance(event, RawMessageDeltaEvent):
            reason = event.delta.stop_reason
            delta_usage = event.usage  # cumulative: it replaces what message_start said
            output_tokens = delta_usage.output_tokens
            if delta_usage.input_tokens is not None:
                input_tokens = delta_usage.input_tokens
            if delta_usage.cache_creation_input_tokens is not None:
                cache_write = delta_usage.cache_creation_input_tokens
            if delta_usage.cache_read_input_tokens is not None:
                cache_read = delta_usage.cache_read_input_tokens
        elif isinstance(event, RawMessageStopEvent):
            stopped = True
    if not stopped:
        raise ModelError(
            "the response stream from Anthropic ended before message_stop (the connection was cut)",
            retryable=True,
            kind="connection",
        )
    texts: list[str] = []
    calls: list[ToolCall] = []
    for _, built in sorted(blocks.items()):
        if built.kind == "text":
            texts.append("".join(built.parts))
        else:
            calls.append(ToolCall(id=built.id, name=built.name, arguments=_streamed_input(built)))
    return ModelResponse(
        text="".join(texts),
        tool_calls=tuple(calls),
        stop_reason=stop_reason(reason),
        usage=usage_of(
            input_tokens=input_tokens, output_tokens=output_tokens, cache_write=cache_write, cache_read=cache_read
        ),
        model=model,
    )


def _streamed_input(block: _Block) -> dict[str, Any] | str:
    text = "".join(block.parts)
    if not text.strip():
        return _arguments(block.start_input if block.start_input is not None else {})
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return text  # malformed or cut short: the engine tells the model what was wrong
    return parsed if isinstance(parsed, dict) else text
