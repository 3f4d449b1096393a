"""The span builder's state: the spans open between the events that start and end them, and what every part of the
builder shares.

``SpanBuilder`` (``spans.py``) is put together from one part per concern, each a mixin over ``SpanState``:
``span_runs.py`` (the run, its steps and model calls), ``span_calls.py`` (tool calls and approvals) and
``span_rollback.py`` (a rollback and its compensations). The state lives here, in one ``__init__``, so that every part
reads and writes the same fields directly: an event's handler is one method of the builder, found with one dictionary
look-up, and nothing is delegated between the parts. What more than one part needs (a span's record, a step's span, a
failure's status) is defined here too. Ending open work, which more than one part starts, is only declared here (for
the type checker) and defined where it belongs: ``SpanBuilder._close_work`` and ``RollbackSpans._close_rollback``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from agentkeel.core.events import ToolFailure
from agentkeel.observe.ids import span_id
from agentkeel.observe.span_records import MAX_EVENTS, AttributeValue, SpanEvent, SpanKind, SpanRecord

__all__ = ["ModelRetries", "OpenSpan", "OpenStep", "SpanState"]


class OpenSpan:
    """A span that has started and not ended. Its attribute dict becomes the record's (never copied)."""

    __slots__ = ("attributes", "events", "kind", "name", "parent_id", "span_id", "start_ns")

    def __init__(
        self,
        span: int,
        parent: int | None,
        name: str,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, AttributeValue],
    ) -> None:
        self.span_id = span
        self.parent_id = parent
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.attributes = attributes
        self.events: list[SpanEvent] = []

    def add(self, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(SpanEvent(name, time_ns, attributes))


class OpenStep:
    """An agent's step: its span, and how many of the calls its response asked for have an outcome."""

    __slots__ = ("done", "expected", "span")

    def __init__(self, span: OpenSpan) -> None:
        self.span = span
        self.expected = 0
        self.done = 0


class ModelRetries:
    """A model call's failed attempts, journaled before its response (or before the run's end, if none came)."""

    __slots__ = ("before_ns", "events", "first_ns", "last_kind")

    def __init__(self, before_ns: int, first_ns: int) -> None:
        self.before_ns = before_ns
        """When the event before the first failed attempt was journaled: about when the call began."""
        self.first_ns = first_ns
        self.events: list[SpanEvent] = []
        self.last_kind = ""


class SpanState:
    """A run's spans in the making: what the builder's parts share. See the module's docstring."""

    def __init__(self, *, capture_content: bool = False) -> None:
        self._content = capture_content
        self._started = False
        self._closed = False
        self._run_id = ""
        self._agent = ""
        self._trace = 0
        self._run_span = 0
        self._run: OpenSpan | None = None
        """The run's span, until the run ends (a rollback after the end has a span of its own)."""
        self._pipeline = False
        self._status = "running"
        self._reason = ""
        self._rolling_back = False
        self._last_ns = 0
        self._steps: dict[int, OpenStep] = {}
        self._retrying: dict[int, ModelRetries] = {}
        self._tools: dict[str, OpenSpan] = {}
        self._approvals: dict[str, OpenSpan] = {}
        self._undos: dict[str, OpenSpan] = {}
        self._undo_spans: dict[str, int] = {}
        """How many compensation spans each call has had (a retried compensation gets a span of its own)."""
        self._names: dict[str, str] = {}
        """Each call's tool, for the compensations that undo it."""
        self._rollback: OpenSpan | None = None
        self._rollbacks = 0
        self._chat_name = ""
        self._model_base: dict[str, AttributeValue] = {}
        self._tool_base: dict[str, AttributeValue] = {}
        self._input_tokens = self._output_tokens = self._cache_read = self._cache_write = 0
        self._cost = 0.0
        self._steps_done = self._model_calls = self._tool_calls = self._tool_errors = 0
        self._messages: list[str] = []
        """With content: the conversation so far, each message already as the conventions' JSON."""
        self._instructions = ""

    if TYPE_CHECKING:  # ending open work, which more than one part starts: see the module's docstring

        def _close_work(self, end_ns: int, out: list[SpanRecord], *, interrupted: bool) -> None: ...

        def _close_rollback(self, end_ns: int, out: list[SpanRecord], *, unfinished: bool) -> None: ...

    def _record(self, span: OpenSpan, end_ns: int, error: str | None = None) -> SpanRecord:
        return SpanRecord(
            trace_id=self._trace,
            span_id=span.span_id,
            parent_id=span.parent_id,
            name=span.name,
            kind=span.kind,
            start_ns=span.start_ns,
            end_ns=max(end_ns, span.start_ns),
            attributes=span.attributes,
            error=error,
            events=tuple(span.events),
        )

    # -- steps ----------------------------------------------------------------------------------------------

    def _open_step(self, step: int, start_ns: int) -> OpenStep:
        found = self._steps.get(step)
        if found is None:
            attributes: dict[str, AttributeValue] = {
                "openinference.span.kind": "CHAIN",
                "agentkeel.step": step,
                "agentkeel.run.id": self._run_id,
            }
            span = OpenSpan(
                span_id(self._run_id, f"step/{step}"), self._run_span, f"step {step}", "internal", start_ns, attributes
            )
            found = self._steps[step] = OpenStep(span)
        return found

    def _end_step(self, step: int, end_ns: int) -> SpanRecord:
        return self._record(self._steps.pop(step).span, end_ns)

    # -- failures -------------------------------------------------------------------------------------------

    def _failure_text(self, failure: ToolFailure) -> str:
        """A failed call's status: its kind (and exception type); the sentence the model read only with content,
        since it may quote the call's data."""
        kind = f"{failure.kind} ({failure.exception_type})" if failure.exception_type else failure.kind
        return f"{kind}: {failure.message}" if self._content else kind
