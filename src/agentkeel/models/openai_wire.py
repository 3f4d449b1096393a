"""Translation between agentkeel's messages and OpenAI's Chat Completions wire format, in both directions.

No I/O and no SDK import: a :class:`ModelRequest` becomes the keyword arguments of
``chat.completions.create``; a completion, or the chunks of a streamed one, become a :class:`ModelResponse`.
Responses are read through ``getattr`` with defaults because OpenAI-compatible servers (vLLM, Ollama, llama.cpp,
LM Studio) leave out fields that OpenAI sends, and the SDK does not validate what it receives.

Rules the translation keeps, and why:

* Tool-call arguments are handed to the engine as the **raw JSON text** the server sent, never parsed here: the
  engine validates them and answers malformed JSON with a message the model can act on.
* A tool result that is an error is prefixed ``Error:`` (unless it already says so): Chat Completions has no
  error flag on tool messages, and the model must know the call failed.
* A response with tool calls stops for ``tool_use`` even when the server says ``stop`` (some compatible servers
  do), so that the calls are never mistaken for a final answer.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from agentkeel.core.messages import (
    ZERO_USAGE,
    ModelRequest,
    ModelResponse,
    StopReason,
    ToolCall,
    ToolResultMessage,
    ToolSchema,
    Usage,
)
from agentkeel.errors import ModelError

StructuredOutput = Literal["json_schema", "json_object", "off"]
"""How a request's ``output_schema`` is sent: as a JSON schema the server enforces, as plain JSON mode (the schema
then belongs in the instructions), or not at all."""

FINISH_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",  # the deprecated functions API
    "length": "max_tokens",
    "content_filter": "content_filter",
}
"""OpenAI's ``finish_reason`` → agentkeel's stop reason; anything else is ``other``."""

ERROR_PREFIX = "Error: "


# -- request ----------------------------------------------------------------------------------------------


def chat_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The conversation as Chat Completions messages: instructions first, as the system message."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for message in request.messages:
        if message.kind == "user":
            messages.append({"role": "user", "content": message.text})
        elif message.kind == "assistant":
            entry: dict[str, Any] = {"role": "assistant", "content": message.text}
            if message.tool_calls:
                entry["content"] = message.text or None  # null, not "", beside tool calls: what OpenAI sends
                entry["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": arguments_text(call.arguments)},
                    }
                    for call in message.tool_calls
                ]
            messages.append(entry)
        else:
            messages.append({"role": "tool", "tool_call_id": message.call_id, "content": tool_result_text(message)})
    return messages


def arguments_text(arguments: dict[str, Any] | str) -> str:
    """Arguments as the wire carries them: JSON text (raw text from a model is sent back exactly as it came)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


def tool_result_text(message: ToolResultMessage) -> str:
    if message.is_error and message.content[:5].lower() != "error":
        return ERROR_PREFIX + message.content
    return message.content


def tool_specs(tools: Sequence[ToolSchema]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


def response_format(schema: dict[str, Any] | None, mode: StructuredOutput) -> dict[str, Any] | None:
    """The ``response_format`` for an output schema, or None to send none."""
    if schema is None or mode == "off":
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    json_schema = {"name": schema_name(schema), "schema": schema, "strict": fits_strict(schema)}
    return {"type": "json_schema", "json_schema": json_schema}


def schema_name(schema: dict[str, Any]) -> str:
    """A name OpenAI accepts (``[A-Za-z0-9_-]{1,64}``), from the schema's title."""
    title = schema.get("title")
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", title).strip("_")[:64] if isinstance(title, str) else ""
    return name or "output"


def fits_strict(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts the schema: every object closed (``additionalProperties: false``)
    with all its properties required. A schema that does not fit is sent non-strict rather than refused."""
    if isinstance(schema, list):
        return all(fits_strict(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    properties = schema.get("properties")
    if isinstance(properties, dict) and (
        schema.get("additionalProperties") is not False or set(schema.get("required", ())) != set(properties)
    ):
        return False
    return all(fits_strict(value) for value in schema.values())


# -- response ---------------------------------------------------------------------------------------------


def from_completion(completion: Any) -> ModelResponse:
    """A non-streamed completion as a :class:`ModelResponse`; its first choice is the model's turn."""
    choices = getattr(completion, "choices", None) or []
    if not choices:
        raise ModelError(
            "the server answered with no choices (an empty chat completion): nothing to act on", kind="other"
        )
    choice = choices[0]
    message = getattr(choice, "message", None)
    calls = tuple(
        _tool_call(raw, index) for index, raw in enumerate(getattr(message, "tool_calls", None) or [], start=1)
    )
    text = getattr(message, "content", None) or getattr(message, "refusal", None) or ""
    return ModelResponse(
        text=text,
        tool_calls=calls,
        stop_reason=stop_reason(getattr(choice, "finish_reason", None), bool(calls)),
        usage=usage_of(getattr(completion, "usage", None)),
        model=getattr(completion, "model", None) or "",
    )


def _tool_call(raw: Any, index: int) -> ToolCall:
    function = getattr(raw, "function", None) or getattr(raw, "custom", None)  # custom tools carry `input`
    name = getattr(function, "name", None) or ""
    arguments = getattr(function, "arguments", None)
    if arguments is None:
        arguments = getattr(function, "input", None) or ""
    return ToolCall(id=getattr(raw, "id", None) or fallback_id(index), name=name, arguments=arguments)


def fallback_id(index: int) -> str:
    """An id for a call the server sent without one (some compatible servers do): results must quote one."""
    return f"call_{index}_{secrets.token_hex(4)}"


def stop_reason(finish_reason: str | None, has_calls: bool) -> StopReason:
    reason = FINISH_REASONS.get(finish_reason or "", "other")
    if has_calls and reason in ("end_turn", "other"):
        return "tool_use"
    return reason


def usage_of(usage: Any) -> Usage:
    if usage is None:
        return ZERO_USAGE
    details = getattr(usage, "prompt_tokens_details", None)
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", None) or 0,
        output_tokens=getattr(usage, "completion_tokens", None) or 0,
        cache_read_tokens=getattr(details, "cached_tokens", None) or 0,
        cache_write_tokens=getattr(details, "cache_write_tokens", None) or 0,
    )


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class StreamAssembly:
    """Builds one :class:`ModelResponse` from the chunks of a streamed completion.

    Text arrives in pieces; each tool call arrives as fragments keyed by its ``index`` (the id and the name in
    the first, the arguments spread over the rest), several calls interleaved; the finish reason comes with the
    last choice and the usage in a final chunk without choices (``stream_options.include_usage``).
    """

    def __init__(self) -> None:
        self._text: list[str] = []
        self._refusal: list[str] = []
        self._calls: dict[int, _PartialCall] = {}
        self._finish: str | None = None
        self._usage = ZERO_USAGE
        self._model = ""

    def add(self, chunk: Any) -> None:
        self._model = getattr(chunk, "model", None) or self._model
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self._usage = usage_of(usage)
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0):
                continue  # only one choice is asked for
            delta = getattr(choice, "delta", None)
            if delta is not None:
                self._delta(delta)
            finish = getattr(choice, "finish_reason", None)
            if finish:
                self._finish = finish

    def _delta(self, delta: Any) -> None:
        content = getattr(delta, "content", None)
        if content:
            self._text.append(content)
        refusal = getattr(delta, "refusal", None)
        if refusal:
            self._refusal.append(refusal)
        for fragment in getattr(delta, "tool_calls", None) or []:
            self._fragment(fragment)

    def _fragment(self, fragment: Any) -> None:
        index = getattr(fragment, "index", None)
        fragment_id = getattr(fragment, "id", None)
        if not isinstance(index, int):  # some servers leave the index out: a new id starts a new call
            index = len(self._calls) if fragment_id or not self._calls else max(self._calls)
        call = self._calls.setdefault(index, _PartialCall())
        if fragment_id and not call.id:
            call.id = fragment_id
        function = getattr(fragment, "function", None)
        name = getattr(function, "name", None)
        if name and not call.name:  # sent once, in the first fragment; a server that repeats it is not doubled
            call.name = name
        arguments = getattr(function, "arguments", None)
        if arguments:
            call.arguments.append(arguments)

    def response(self) -> ModelResponse:
        if self._finish is None:
            raise ModelError(
                "the stream ended before the model finished its turn (no finish_reason): the connection was cut",
                retryable=True,
                kind="connection",
            )
        calls = tuple(
            ToolCall(id=call.id or fallback_id(position), name=call.name, arguments="".join(call.arguments))
            for position, (_, call) in enumerate(sorted(self._calls.items()), start=1)
        )
        return ModelResponse(
            text="".join(self._text) or "".join(self._refusal),
            tool_calls=calls,
            stop_reason=stop_reason(self._finish, bool(calls)),
            usage=self._usage,
            model=self._model,
        )
