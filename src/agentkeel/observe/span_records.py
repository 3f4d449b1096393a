"""Finished spans as plain records, and the small pure helpers the span builder's parts share.

A run's spans are derived from its journal (``spans.py``) into these records rather than into an OpenTelemetry SDK's
spans: the same records serve a live trace (``live.py``), ``keel export`` (``export.py``) and the message bus's spans
(``bus_spans.py``), and each turns them into the SDK's own only at the end. The helpers are pure, so each part of the
builder converts an event's figures the same way (times in nanoseconds, stop reasons as ``finish_reason``, values as
JSON text) without sharing any state for it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AttributeValue",
    "FINISH_REASONS",
    "JSON_MIME",
    "MAX_EVENTS",
    "SpanEvent",
    "SpanKind",
    "SpanRecord",
    "dumps",
    "provider_and_model",
    "step_of",
    "to_ns",
]

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float] | Sequence[bool]
SpanKind = Literal["internal", "client", "producer", "consumer"]
"""A run's spans are ``internal`` or ``client`` (model calls); the bus's messages are ``producer`` and ``consumer``."""

MAX_EVENTS = 128
"""Events kept per span (the SDK's default limit): a run that pauses or is told off a thousand times keeps a
bounded span."""

FINISH_REASONS = {
    "end_turn": "stop",
    "tool_use": "tool_call",
    "max_tokens": "length",
    "stop_sequence": "stop",
    "content_filter": "content_filter",
    "other": "other",
}
"""``StopReason`` as the conventions' ``finish_reason`` values."""

JSON_MIME = "application/json"


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """Something that happened during a span (a retry, a resume, a pause), at ``time_ns``."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished span, independent of any OpenTelemetry implementation (``export.py`` and ``live.py`` turn it
    into the SDK's)."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    error: str | None
    """The status description when the span failed; None: it did not."""
    events: tuple[SpanEvent, ...] = ()


def to_ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def step_of(call: str) -> int | None:
    """The step a call id (``"<step>.<index>"``) belongs to."""
    head = call.partition(".")[0]
    return int(head) if head.isdigit() else None


def provider_and_model(model: str) -> tuple[str, str]:
    """``openai:gpt-4.1`` → ``("openai", "gpt-4.1")``; a model named without a provider is its own provider."""
    provider, _, name = model.partition(":")
    return (provider, name) if name else (model, model)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
