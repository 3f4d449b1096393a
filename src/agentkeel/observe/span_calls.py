"""The spans of tool calls and of approvals.

* each tool call: ``execute_tool <tool>``, under its step (a call id is ``<step>.<index>``), from
  ``tool_call_started`` to ``tool_call_finished``; its retries, its resumes after a crash and the retries a person
  authorized are events on it. A call refused before it could start (unknown tool, invalid arguments, a gate, a
  budget) and a dry run's write call, not made, have a span of no length: every call the model asked for shows;
* each approval: ``await_approval <tool>``, from the request to the decision, under the step of the call it gates.

Each call's outcome counts towards its step: the last of the calls its response asked for ends the step's span. A
failed call's status and events give its kind; the message, which may quote the call's data, only with
``capture_content``.
"""

from __future__ import annotations

from agentkeel.core.events import (
    ApprovalRequested,
    CallApproved,
    CallPreviewed,
    CallRejected,
    CallRetryAuthorized,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.observe.ids import span_id
from agentkeel.observe.span_records import JSON_MIME, AttributeValue, SpanRecord, dumps, step_of, to_ns
from agentkeel.observe.span_state import OpenSpan, SpanState

__all__ = ["CallSpans"]


class CallSpans(SpanState):
    """The builder's handlers for tool calls and approvals."""

    # -- tool calls -----------------------------------------------------------------------------------------

    def _parent_of_call(self, call: str) -> int:
        number = step_of(call)
        if number is None:
            return self._run_span
        step = self._steps.get(number)
        return step.span.span_id if step is not None else span_id(self._run_id, f"step/{number}")

    def _tool_span(self, call: str, tool_call_id: str, name: str, start_ns: int) -> OpenSpan:
        attributes: dict[str, AttributeValue] = {
            **self._tool_base,
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": tool_call_id,
            "tool.name": name,
            "agentkeel.call": call,
        }
        if name.startswith("delegate_to_"):
            attributes["agentkeel.child_run.id"] = f"{self._run_id}.{call}"
        return OpenSpan(
            span_id(self._run_id, f"tool/{call}"),
            self._parent_of_call(call),
            f"execute_tool {name}",
            "internal",
            start_ns,
            attributes,
        )

    def _tool_call_started(self, e: ToolCallStarted) -> list[SpanRecord]:
        if e.call in self._tools:
            return []
        span = self._tools[e.call] = self._tool_span(e.call, e.tool_call_id, e.name, to_ns(e.at))
        self._names[e.call] = e.name
        self._tool_calls += 1
        if self._content:
            arguments = dumps(e.arguments)
            span.attributes["gen_ai.tool.call.arguments"] = arguments
            span.attributes["input.value"] = arguments
            span.attributes["input.mime_type"] = JSON_MIME
        return []

    def _tool_call_retrying(self, e: ToolCallRetrying) -> list[SpanRecord]:
        span = self._tools.get(e.call)
        if span is not None:
            shown = self._failure_attributes(e.error)
            shown["agentkeel.attempt"] = e.attempt
            shown["agentkeel.retry.delay_s"] = e.delay_s
            span.add("tool_call_retrying", to_ns(e.at), shown)
        return []

    def _tool_call_resumed(self, e: ToolCallResumed) -> list[SpanRecord]:
        span = self._tools.get(e.call)
        if span is not None:
            span.add("tool_call_resumed", to_ns(e.at), {"agentkeel.attempt": e.attempt, "agentkeel.resumed.why": e.why})
        return []

    def _call_retry_authorized(self, e: CallRetryAuthorized) -> list[SpanRecord]:
        span = self._tools.get(e.call)
        if span is not None:
            span.add("call_retry_authorized", to_ns(e.at), {"agentkeel.by": e.by})
        return []

    def _tool_call_finished(self, e: ToolCallFinished) -> list[SpanRecord]:
        end = to_ns(e.at)
        span = self._tools.pop(e.call, None)
        if span is None:  # refused before it could start (unknown tool, invalid arguments, a gate, a budget)
            span = self._tool_span(e.call, e.tool_call_id, e.name, end)
            self._tool_calls += 1
            self._names.setdefault(e.call, e.name)
        attributes = span.attributes
        attributes["agentkeel.tool.attempts"] = e.attempts
        if e.resolved_by:
            attributes["agentkeel.resolved_by"] = e.resolved_by
        error = None
        if e.error is not None:
            self._tool_errors += 1
            attributes["error.type"] = e.error.kind
            if e.error.exception_type:
                attributes["exception.type"] = e.error.exception_type
            error = self._failure_text(e.error)
        if self._content:
            result = e.content if e.result is None else dumps(e.result)
            attributes["gen_ai.tool.call.result"] = result
            attributes["output.value"] = e.content
            self._tool_result_message(e.tool_call_id, e.content)
        out = [self._record(span, end, error)]
        self._outcome(e.call, end, out)
        return out

    def _call_previewed(self, e: CallPreviewed) -> list[SpanRecord]:
        """A dry run's write call, not made: a span of no length that says so."""
        end = to_ns(e.at)
        span = self._tool_span(e.call, e.tool_call_id, e.name, end)
        span.attributes["agentkeel.tool.dry_run"] = True
        span.attributes["agentkeel.tool.has_preview"] = e.has_preview
        self._tool_calls += 1
        if self._content:
            span.attributes["gen_ai.tool.call.arguments"] = dumps(e.arguments)
            span.attributes["gen_ai.tool.call.result"] = e.content
            self._tool_result_message(e.tool_call_id, e.content)
        out = [self._record(span, end)]
        self._outcome(e.call, end, out)
        return out

    def _tool_result_message(self, tool_call_id: str, content: str) -> None:
        part = {"type": "tool_call_response", "id": tool_call_id, "response": content}
        self._messages.append(dumps({"role": "tool", "parts": [part]}))

    def _outcome(self, call: str, end_ns: int, out: list[SpanRecord]) -> None:
        """One more of a step's calls has its outcome: the last one ends the step."""
        number = step_of(call)
        if number is None:
            return
        step = self._steps.get(number)
        if step is not None:
            step.done += 1
            if step.done >= step.expected:
                out.append(self._end_step(number, end_ns))

    def _failure_attributes(self, failure: ToolFailure) -> dict[str, AttributeValue]:
        shown: dict[str, AttributeValue] = {"error.type": failure.kind}
        if failure.exception_type:
            shown["exception.type"] = failure.exception_type
        if self._content:
            shown["error.message"] = failure.message
        return shown

    # -- approvals ------------------------------------------------------------------------------------------

    def _approval_requested(self, e: ApprovalRequested) -> list[SpanRecord]:
        if e.call in self._approvals:
            return []
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "CHAIN",
            "gen_ai.tool.name": e.name,
            "gen_ai.tool.call.id": e.tool_call_id,
            "agentkeel.call": e.call,
            "agentkeel.approval.why": e.why,
            "agentkeel.run.id": self._run_id,
        }
        if self._content:
            attributes["gen_ai.tool.call.arguments"] = dumps(e.arguments)
        self._names[e.call] = e.name
        self._approvals[e.call] = OpenSpan(
            span_id(self._run_id, f"approval/{e.call}"),
            self._parent_of_call(e.call),
            f"await_approval {e.name}",
            "internal",
            to_ns(e.at),
            attributes,
        )
        return []

    def _call_approved(self, e: CallApproved) -> list[SpanRecord]:
        span = self._approvals.pop(e.call, None)
        if span is None:
            return []
        span.attributes["agentkeel.approval.decision"] = "approved"
        span.attributes["agentkeel.approval.by"] = e.by
        span.attributes["agentkeel.approval.edited"] = e.arguments is not None
        return [self._record(span, to_ns(e.at))]

    def _call_rejected(self, e: CallRejected) -> list[SpanRecord]:
        span = self._approvals.pop(e.call, None)
        if span is None:
            return []
        span.attributes["agentkeel.approval.decision"] = "rejected"
        span.attributes["agentkeel.approval.by"] = e.by
        span.attributes["agentkeel.approval.reason"] = e.reason
        return [self._record(span, to_ns(e.at))]
