"""A span record in the OpenTelemetry API's terms (no SDK needed): its kind, and the context of a span of ours,
for live tracing (``live.py``) and for the SDK's spans (``sdk_spans.py``) alike."""

from __future__ import annotations

from opentelemetry.trace import SpanContext, SpanKind, TraceFlags

_KINDS = {
    "internal": SpanKind.INTERNAL,
    "client": SpanKind.CLIENT,
    "consumer": SpanKind.CONSUMER,
    "producer": SpanKind.PRODUCER,
}
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def span_kind(kind: str) -> SpanKind:
    return _KINDS.get(kind, SpanKind.INTERNAL)


def sampled_context(trace_id: int, span_id: int) -> SpanContext:
    """The context of one of our spans: local, always sampled (what is recorded is exported)."""
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)
