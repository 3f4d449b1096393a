"""The provider-neutral conversation: what goes to a model and what comes back.

Every provider adapter translates to and from these dataclasses, so the engine never knows which model it
talks to. Messages carry a ``kind`` discriminator so that they round-trip through JSON in the journal.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import field
from typing import Any, Literal, overload

from agentkeel.core.record import record

StopReason = Literal["end_turn", "tool_use", "max_tokens", "stop_sequence", "content_filter", "other"]
"""Why the model stopped: it finished its turn, it asked for tools, it ran out of output tokens, ..."""


@record
class Usage:
    """Tokens a model call consumed, as the provider reported them."""

    input_tokens: int = 0
    """Prompt tokens, cache reads and writes included."""
    output_tokens: int = 0
    """Completion tokens."""
    cache_read_tokens: int = 0
    """Prompt tokens served from the provider's cache (a subset of ``input_tokens``)."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the provider's cache (a subset of ``input_tokens``)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


ZERO_USAGE = Usage()


@record
class ToolCall:
    """One call the model asked for. A response may hold several."""

    id: str
    """The provider's id for the call; the tool result must quote it back."""
    name: str
    """The tool's name, exactly as the model wrote it (it may not exist)."""
    arguments: dict[str, Any] | str = field(default_factory=dict)
    """Parsed arguments, or the raw JSON text when the provider sends text (it may be malformed)."""


@record
class UserMessage:
    """Text from the person or system that gave the task."""

    kind: Literal["user"] = "user"
    text: str


@record
class AssistantMessage:
    """What the model said: text, tool calls, or both."""

    kind: Literal["assistant"] = "assistant"
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()


@record
class ToolResultMessage:
    """The outcome of one tool call, as the model will read it."""

    kind: Literal["tool_result"] = "tool_result"
    call_id: str
    """The id of the :class:`ToolCall` this answers."""
    name: str
    """The tool's name, as the model called it."""
    content: str
    """The result serialised as text (JSON for structured results), or an actionable error message."""
    is_error: bool = False


Message = UserMessage | AssistantMessage | ToolResultMessage


class Conversation(Sequence[Message]):
    """A read-only view of the first messages of a run's append-only conversation.

    Making one costs nothing whatever the conversation's length, so a long run does not copy its history at every
    turn. ``memo`` is a cache shared by every view of the same conversation: consumers may keep incremental
    figures there (e.g. a running size) under a key of their own.
    """

    __slots__ = ("_length", "_messages", "memo")

    def __init__(self, messages: list[Message], memo: dict[str, Any] | None = None) -> None:
        self._messages = messages
        self._length = len(messages)
        self.memo: dict[str, Any] = {} if memo is None else memo

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | list[Message]:
        if isinstance(index, slice):
            return self._messages[slice(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError("conversation index out of range")
        return self._messages[index]

    def __iter__(self) -> Iterator[Message]:
        messages = self._messages
        for index in range(self._length):
            yield messages[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == self._length and all(a == b for a, b in zip(self, other, strict=False))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Conversation({list(self)!r})"


@record
class ToolSchema:
    """How a tool is described to a model."""

    name: str
    description: str
    parameters: dict[str, Any]
    """A JSON schema (an object) for the arguments."""


@record
class ModelRequest:
    """Everything a model needs for one turn."""

    instructions: str
    """The system prompt."""
    messages: Sequence[Message]
    """The conversation so far, oldest first (a :class:`Conversation` when the engine sends it)."""
    tools: tuple[ToolSchema, ...] = ()
    max_output_tokens: int | None = None
    temperature: float | None = None
    output_schema: dict[str, Any] | None = None
    """A JSON schema the final answer's text must match; providers that can constrain their output to it do."""


@record
class ModelResponse:
    """One turn of the model."""

    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: StopReason = "end_turn"
    usage: Usage = ZERO_USAGE
    model: str = ""
    """The model that answered, as the provider names it."""

    def as_message(self) -> AssistantMessage:
        return AssistantMessage(text=self.text, tool_calls=self.tool_calls)
