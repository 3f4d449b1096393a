"""Trace and span ids derived from run ids, so that every process that drives a run (and ``keel export`` later)
gives its spans the same ids: a run that crashed and resumed reads as one trace.

A run's trace is its own (the trace id derives from the run id) unless the run nests under another span: a
supervisor's delegation, a bus message, or the caller's active span. ``RunStarted.trace_parent`` keeps that span
as a W3C ``traceparent``. Each span of a run has a key (``run``, ``step/3``, ``model/3``, ``tool/<call id>``, ...);
its id derives from the run id and the key.
"""

from __future__ import annotations

import hashlib
import re

from agentkeel.errors import ConfigError

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def _digest(text: str, size: int) -> int:
    value = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=size).digest(), "big")
    return value or 1  # zero is the invalid id


def span_id(run_id: str, key: str) -> int:
    """The 64-bit id of the span ``key`` of run ``run_id``."""
    return _digest(f"{run_id}/{key}", 8)


def parse_traceparent(text: str | None) -> tuple[int, int] | None:
    """``(trace id, span id)`` of a W3C traceparent; None when absent or malformed (or an all-zero id)."""
    if not text:
        return None
    found = _TRACEPARENT.match(text.strip().lower())
    if found is None:
        return None
    trace, span = int(found.group(1), 16), int(found.group(2), 16)
    return (trace, span) if trace and span else None


def check_traceparent(text: str | None) -> None:
    """A ``trace_parent`` given by the caller must be a W3C traceparent: a malformed one would quietly start a
    trace of its own."""
    if text is not None and parse_traceparent(text) is None:
        raise ConfigError(
            f"trace_parent {text!r} is not a W3C traceparent: write 00-<32 hex trace id>-<16 hex span id>-01, e.g. "
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 (or pass None to nest under the current span)"
        )


def format_traceparent(trace_id: int, span: int) -> str:
    """A sampled W3C traceparent."""
    return f"00-{trace_id:032x}-{span:016x}-01"


def trace_id_of(run_id: str, trace_parent: str | None) -> int:
    """The 128-bit trace id of a run: its parent span's, else derived from the run id."""
    parent = parse_traceparent(trace_parent)
    return parent[0] if parent else _digest(f"trace/{run_id}", 16)


def parent_span_of(trace_parent: str | None) -> int | None:
    """The span a run's ``run`` span nests under, if any."""
    parent = parse_traceparent(trace_parent)
    return parent[1] if parent else None


def correlation_trace_id(correlation_id: str) -> int:
    """The trace of one piece of work on the bus: every message with this correlation id belongs to it."""
    return _digest(f"correlation/{correlation_id}", 16)


def delegation_traceparent(parent_run_id: str, parent_trace_parent: str | None, call_id: str) -> str:
    """Where a subagent's run nests: under its supervisor's ``execute_tool`` span for the delegation."""
    return format_traceparent(
        trace_id_of(parent_run_id, parent_trace_parent), span_id(parent_run_id, f"tool/{call_id}")
    )


def current_traceparent() -> str | None:
    """The caller's active OpenTelemetry span as a traceparent (a run started inside a traced request nests under
    it); None when no valid span is active."""
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format_traceparent(context.trace_id, context.span_id)
