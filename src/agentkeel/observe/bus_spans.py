"""Spans of the message bus: one trace per piece of work (correlation id), whatever process handled each message.

A message that starts a piece of work is traced as ``publish <topic>`` (a producer span of no duration, id derived
from the correlation id); each delivery a group handles is ``process <topic>`` (a consumer span) under it, with the
OpenTelemetry messaging attributes. While a handler runs, its ``process`` span is the current span, so an agent run
it starts (``agent_handler``) nests under it, and so do the spans of the application's own code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from agentkeel.bus.base import Message
from agentkeel.observe.ids import correlation_trace_id, span_id
from agentkeel.observe.spans import AttributeValue, SpanRecord


def origin_span_id(correlation_id: str) -> int:
    return span_id("bus", f"origin/{correlation_id}")


def process_span_id(message: Message, group: str) -> int:
    return span_id(f"bus/{group}", message.id)


def origin_span(message: Message, system: str) -> SpanRecord:
    """The span of a message that starts a piece of work, at its publication."""
    at = int(message.published_at * 1e9)
    attributes: dict[str, AttributeValue] = {
        "messaging.system": system,
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": message.topic,
        "messaging.message.id": message.id,
        "messaging.message.conversation_id": message.correlation_id,
    }
    return SpanRecord(
        trace_id=correlation_trace_id(message.correlation_id),
        span_id=origin_span_id(message.correlation_id),
        parent_id=None,
        name=f"publish {message.topic}",
        kind="producer",
        start_ns=at,
        end_ns=at,
        attributes=attributes,
        error=None,
    )


def process_span(
    message: Message, group: str, system: str, *, start_ns: int, outcome: str, error: str | None
) -> SpanRecord:
    """The span of one delivery handled by ``group``: from the handler's start to the settlement."""
    attributes: dict[str, AttributeValue] = {
        "messaging.system": system,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": message.topic,
        "messaging.consumer.group.name": group,
        "messaging.message.id": message.id,
        "messaging.message.conversation_id": message.correlation_id,
        "agentkeel.bus.attempt": message.attempts,
        "agentkeel.bus.outcome": outcome,
    }
    if message.causation_id:
        attributes["agentkeel.bus.causation_id"] = message.causation_id
    if error is not None:
        attributes["error.type"] = outcome
    return SpanRecord(
        trace_id=correlation_trace_id(message.correlation_id),
        span_id=process_span_id(message, group),
        parent_id=origin_span_id(message.correlation_id),
        name=f"process {message.topic}",
        kind="consumer",
        start_ns=start_ns,
        end_ns=time.time_ns(),
        attributes=attributes,
        error=error,
    )


@contextmanager
def processing(message: Message, group: str) -> Iterator[None]:
    """Make the delivery's ``process`` span the current span while its handler runs."""
    nest = SpanContext(
        correlation_trace_id(message.correlation_id),
        process_span_id(message, group),
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    token = otel_context.attach(trace.set_span_in_context(NonRecordingSpan(nest)))
    try:
        yield
    finally:
        otel_context.detach(token)
