"""From a run's journal to its spans: the trace of a run is derived from its events, never recorded apart.

A ``SpanBuilder`` takes a run's events one at a time and hands back the spans each one finishes. The same builder
serves three readers: a live driver feeds it each event as it is committed; a process that resumes a run after a
crash feeds it the stored journal first (and drops what that gives: the dead process emitted it), so the spans
that were open at the crash (the run, the step, the call in flight) end with their original start times; and
``keel export`` feeds it a whole journal after the fact (``journal_spans``). Span and trace ids derive from the run
id (``ids.py``), so the three agree, and a run that crashed and resumed reads as one trace.

The spans follow the OpenTelemetry GenAI semantic conventions (span names, kinds, ``gen_ai.*`` attributes) and
carry OpenInference's ``openinference.span.kind`` and ``llm.*`` figures so that either kind of backend reads them:

* the run: ``invoke_agent <agent>`` (a pipeline: ``invoke_workflow <pipeline>``), each step ``step <n>`` and each
  model call ``chat <model>`` (``span_runs.py``);
* each tool call: ``execute_tool <tool>``; approvals: ``await_approval <tool>`` (``span_calls.py``);
* a rollback: ``rollback <agent>`` with one ``compensate <tool>`` per undone call (``span_rollback.py``).

Content (the task, prompts, answers, tool arguments and results) is recorded only with ``capture_content``; without
it no text the model read or wrote appears in any span, only names, ids, figures and error kinds.

The builder is fed on every commit of every traced run, so it keeps per-event work small: no journal rescans, no
copies, each attribute dictionary built once and handed to the span record as it is. That is also why it is one
class put together from those parts (mixins over the shared state of ``span_state.py``) rather than parts that call
one another: an event costs one dictionary look-up and one method call. The records it hands back, and the helpers
the parts share, are in ``span_records.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agentkeel.core.events import Event
from agentkeel.observe.ids import span_id
from agentkeel.observe.span_calls import CallSpans
from agentkeel.observe.span_records import AttributeValue, SpanEvent, SpanKind, SpanRecord, to_ns
from agentkeel.observe.span_rollback import RollbackSpans
from agentkeel.observe.span_runs import RunSpans
from agentkeel.observe.span_state import OpenSpan

__all__ = ["AttributeValue", "SpanBuilder", "SpanEvent", "SpanKind", "SpanRecord", "journal_spans"]


class SpanBuilder(RunSpans, CallSpans, RollbackSpans):
    """A run's spans, built as its events come.

    ``feed(event)`` returns the spans that event finishes, children before parents, each exactly once over the
    builder's life. ``close()`` ends the spans still open at the last event's time (a run exported while it is still
    running or paused); after it the builder takes no more events. See the module's docstring.
    """

    # -- the interface --------------------------------------------------------------------------------------

    def feed(self, event: Event) -> list[SpanRecord]:
        """The spans ``event`` finishes (children before parents); often none."""
        if self._closed or (not self._started and event.kind != "run_started"):
            return []
        handler = _HANDLERS.get(event.kind)
        done = handler(self, event) if handler is not None else []
        self._last_ns = to_ns(event.at)
        return done

    def close(self) -> list[SpanRecord]:
        """End every open span at the last event's time, the run's with the status it has now (``running``,
        ``paused``, ...) and ``agentkeel.unfinished``; nothing is marked failed for not having finished."""
        if self._closed or not self._started:
            self._closed = True
            return []
        self._closed = True
        out: list[SpanRecord] = []
        end = self._last_ns
        self._close_work(end, out, interrupted=False)
        self._close_rollback(end, out, unfinished=True)
        run = self._run
        if run is not None:
            self._run = None
            attributes = run.attributes
            self._run_figures(attributes, self._status, self._reason)
            attributes["agentkeel.unfinished"] = True
            out.append(self._record(run, end))
        return out

    # -- ending open work -----------------------------------------------------------------------------------

    def _close_work(self, end_ns: int, out: list[SpanRecord], *, interrupted: bool) -> None:
        """End the agent's open approvals, calls, model calls and steps: ``interrupted`` (the run ended or rolls
        back, so they never will) or merely unfinished (``close``: they may yet)."""
        for span in self._approvals.values():
            span.attributes["agentkeel.approval.decision"] = "undecided"
            if not interrupted:
                span.attributes["agentkeel.unfinished"] = True
            out.append(self._record(span, end_ns))
        self._approvals.clear()
        for span in self._tools.values():
            if interrupted:
                span.attributes["error.type"] = "interrupted"
                out.append(self._record(span, end_ns, "interrupted: the run went on without an outcome of this call"))
            else:
                span.attributes["agentkeel.unfinished"] = True
                out.append(self._record(span, end_ns))
        self._tools.clear()
        for number, retries in self._retrying.items():  # a model call whose attempts all failed
            step = self._open_step(number, retries.before_ns)
            attributes = {**self._model_base, "agentkeel.step": number}
            model = OpenSpan(
                span_id(self._run_id, f"model/{number}"),
                step.span.span_id,
                self._chat_name,
                "client",
                retries.before_ns,
                attributes,
            )
            model.events = retries.events
            if interrupted:
                attributes["error.type"] = retries.last_kind
                error: str | None = f"{len(retries.events)} attempt(s) failed ({retries.last_kind}); no response"
            else:
                attributes["agentkeel.unfinished"] = True
                error = None
            out.append(self._record(model, end_ns, error))
        self._retrying.clear()
        for number in list(self._steps):
            out.append(self._end_step(number, end_ns))


_HANDLERS: dict[str, Callable[[SpanBuilder, Any], list[SpanRecord]]] = {
    "run_started": SpanBuilder._run_started,
    "model_retrying": SpanBuilder._model_retrying,
    "model_responded": SpanBuilder._model_responded,
    "tool_call_started": SpanBuilder._tool_call_started,
    "tool_call_retrying": SpanBuilder._tool_call_retrying,
    "tool_call_resumed": SpanBuilder._tool_call_resumed,
    "tool_call_finished": SpanBuilder._tool_call_finished,
    "call_retry_authorized": SpanBuilder._call_retry_authorized,
    "call_previewed": SpanBuilder._call_previewed,
    "approval_requested": SpanBuilder._approval_requested,
    "call_approved": SpanBuilder._call_approved,
    "call_rejected": SpanBuilder._call_rejected,
    "intervened": SpanBuilder._intervened,
    "context_compacted": SpanBuilder._context_compacted,
    "note_written": SpanBuilder._note_written,
    "step_finished": SpanBuilder._step_finished,
    "rollback_started": SpanBuilder._rollback_started,
    "compensation_started": SpanBuilder._compensation_started,
    "compensation_finished": SpanBuilder._compensation_finished,
    "run_paused": SpanBuilder._run_paused,
    "run_resumed": SpanBuilder._run_resumed,
    "run_ended": SpanBuilder._run_ended,
}
"""Each event kind's handler (an event of a kind not listed finishes no span)."""


def journal_spans(
    events: Sequence[Event], *, capture_content: bool = False, finished_only: bool = False
) -> list[SpanRecord]:
    """Every span of a journal, children before parents; the spans still open at its last event end there
    (``finished_only``: left out)."""
    builder = SpanBuilder(capture_content=capture_content)
    spans: list[SpanRecord] = []
    for event in events:
        spans.extend(builder.feed(event))
    if not finished_only:
        spans.extend(builder.close())
    return spans
