"""The spans of a rollback: ``rollback <agent>`` under the run, with one ``compensate <tool>`` per undone call.

A rollback begins when the agent's part is over (its open calls and steps end there, interrupted) and may come after
the run's end, so it has a span of its own rather than being the run's tail; a rollback started again after a pause
gets a new one. A compensation that runs again after a crash goes on in the same span (``compensation_resumed``); one
tried again in a later rollback gets a span of its own. A call settled without anything run (no compensation declared,
or a person settled it) has a span of no length, so every undone call shows.
"""

from __future__ import annotations

from agentkeel.core.events import CompensationFinished, CompensationStarted, RollbackStarted
from agentkeel.observe.ids import span_id
from agentkeel.observe.span_records import AttributeValue, SpanRecord, to_ns
from agentkeel.observe.span_state import OpenSpan, SpanState

__all__ = ["RollbackSpans"]


class RollbackSpans(SpanState):
    """The builder's handlers for a rollback and its compensations."""

    def _rollback_started(self, e: RollbackStarted) -> list[SpanRecord]:
        out: list[SpanRecord] = []
        at = to_ns(e.at)
        self._close_work(at, out, interrupted=True)  # the agent's part is over
        self._close_rollback(at, out, unfinished=False)  # a rollback tried again after a pause
        self._status, self._reason, self._rolling_back = "rolling_back", "rollback", True
        self._rollbacks += 1
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "CHAIN",
            "agentkeel.run.id": self._run_id,
            "agentkeel.rollback.by": e.by,
            "agentkeel.rollback.why": e.why,
            "agentkeel.rollback.calls": e.calls,
        }
        key = f"rollback/{self._rollbacks}"
        self._rollback = OpenSpan(
            span_id(self._run_id, key), self._run_span, f"rollback {self._agent}", "internal", at, attributes
        )
        return out

    def _undo_span(self, call: str, start_ns: int) -> OpenSpan:
        count = self._undo_spans.get(call, 0) + 1
        self._undo_spans[call] = count
        key = f"undo/{call}" if count == 1 else f"undo/{call}#{count}"
        name = self._names.get(call, "")
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "TOOL",
            "gen_ai.tool.name": name,
            "tool.name": name,
            "agentkeel.call": call,
            "agentkeel.run.id": self._run_id,
        }
        parent = self._rollback.span_id if self._rollback is not None else self._run_span
        return OpenSpan(span_id(self._run_id, key), parent, f"compensate {name}", "internal", start_ns, attributes)

    def _compensation_started(self, e: CompensationStarted) -> list[SpanRecord]:
        at = to_ns(e.at)
        span = self._undos.get(e.call)
        if span is not None:  # the compensation runs again after a crash: the same span goes on
            span.add("compensation_resumed", at, {"agentkeel.attempt": e.attempt})
            return []
        span = self._undos[e.call] = self._undo_span(e.call, at)
        span.attributes["agentkeel.attempt"] = e.attempt
        return []

    def _compensation_finished(self, e: CompensationFinished) -> list[SpanRecord]:
        end = to_ns(e.at)
        span = self._undos.pop(e.call, None)
        if span is None:  # nothing ran: no compensation declared, or a person settled it
            span = self._undo_span(e.call, end)
        attributes = span.attributes
        if e.resolved_by:
            attributes["agentkeel.resolved_by"] = e.resolved_by
        error = None
        if e.error is not None:
            attributes["error.type"] = e.error.kind
            if e.error.exception_type:
                attributes["exception.type"] = e.error.exception_type
            error = self._failure_text(e.error)
        if self._content:
            attributes["output.value"] = e.content
        return [self._record(span, end, error)]

    def _close_rollback(self, end_ns: int, out: list[SpanRecord], *, unfinished: bool) -> None:
        for span in self._undos.values():
            if unfinished:
                span.attributes["agentkeel.unfinished"] = True
                out.append(self._record(span, end_ns))
            else:
                span.attributes["error.type"] = "interrupted"
                out.append(self._record(span, end_ns, "interrupted: no outcome was journaled"))
        self._undos.clear()
        rollback = self._rollback
        if rollback is not None:
            self._rollback = None
            if unfinished:
                rollback.attributes["agentkeel.unfinished"] = True
            out.append(self._record(rollback, end_ns))
