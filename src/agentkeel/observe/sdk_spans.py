"""``SpanRecord`` to the OpenTelemetry SDK's ``ReadableSpan``: the one conversion for live tracing (handed to a
provider's span processors) and ``keel export`` (handed to an exporter). Needs the SDK (``agentkeel[otel]``)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Status, StatusCode

from agentkeel.observe.otel_terms import sampled_context, span_kind
from agentkeel.observe.span_records import SpanRecord
from agentkeel.redaction import redactor

_UNSET = Status(StatusCode.UNSET)


class SpanMaker:
    """Finished spans on ``resource``, from agentkeel's instrumentation scope. What leaves the process is redacted:
    events and error descriptions always, attributes when ``all_attributes`` (spans with content, or built from a
    journal held in memory); without content an attribute holds only names, ids, kinds and figures."""

    def __init__(self, resource: Any, version: str, *, all_attributes: bool) -> None:
        self._resource = resource
        self._scope = InstrumentationScope("agentkeel", version)
        self._all = all_attributes

    def make(self, record: SpanRecord) -> ReadableSpan:
        red = redactor()
        trace_id = record.trace_id
        parent = None
        if record.parent_id is not None:
            parent = sampled_context(trace_id, record.parent_id)
        return ReadableSpan(
            record.name,
            context=sampled_context(trace_id, record.span_id),
            parent=parent,
            resource=self._resource,
            attributes=red.attributes(record.attributes) if self._all else record.attributes,
            events=tuple(Event(e.name, red.attributes(e.attributes), e.time_ns) for e in record.events),
            kind=span_kind(record.kind),
            status=_UNSET if record.error is None else Status(StatusCode.ERROR, red.text(record.error)),
            start_time=record.start_ns,
            end_time=record.end_ns,
            instrumentation_scope=self._scope,
        )
