"""The fold: how each journal event moves a ``RunState`` forward (``RunState.apply`` looks its kind up in
``APPLY``). Every handler is a pure function of the state and the event; a transition of status goes through
``RunState._to``, which checks it against ``TRANSITIONS`` (``state.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentkeel.core.calls import Approval, CallRecord, Undo
from agentkeel.core.events import (
    ApprovalRequested,
    CallApproved,
    CallPreviewed,
    CallRejected,
    CallRetryAuthorized,
    CompensationFinished,
    CompensationStarted,
    ContextCompacted,
    Intervened,
    ModelResponded,
    ModelRetrying,
    NoteWritten,
    PlannedCall,
    RollbackStarted,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    StepFinished,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
)
from agentkeel.core.messages import ToolResultMessage, UserMessage
from agentkeel.errors import JournalError

if TYPE_CHECKING:
    from agentkeel.core.state import RunState


def _model_responded(state: RunState, event: ModelResponded) -> None:
    state.steps_completed = event.step
    state.model_calls += 1
    usage = event.response.usage
    state.input_tokens += usage.input_tokens
    state.last_input_tokens = usage.input_tokens
    state.output_tokens += usage.output_tokens
    state.cache_read_tokens += usage.cache_read_tokens
    state.cache_write_tokens += usage.cache_write_tokens
    state.cost_usd += event.cost_usd
    state.messages.append(event.response.as_message())


def _model_retrying(state: RunState, event: ModelRetrying) -> None:
    state.model_retries += 1


def _step_finished(state: RunState, event: StepFinished) -> None:
    if event.key in state.steps:
        raise JournalError(f"run {state.run_id}: pipeline step {event.key!r} finished twice")
    state.steps[event.key] = event.result
    state.model_calls += event.model_calls
    state.input_tokens += event.input_tokens
    state.output_tokens += event.output_tokens
    state.cost_usd += event.cost_usd
    state.steps_completed += 1


def _call_previewed(state: RunState, event: CallPreviewed) -> None:
    state.tool_calls += 1
    state.plan.append(
        PlannedCall(
            call=event.call,
            name=event.name,
            arguments=event.arguments,
            preview=event.preview,
            has_preview=event.has_preview,
        )
    )
    state.messages.append(ToolResultMessage(call_id=event.tool_call_id, name=event.name, content=event.content))


def _tool_call_started(state: RunState, event: ToolCallStarted) -> None:
    state.tool_calls += 1
    state.tool_counts[event.name] = state.tool_counts.get(event.name, 0) + 1
    state.calls[event.call] = state.open_calls[event.call] = CallRecord(started=event)
    if state.mode == "apply" and state.plan_done < len(state.plan):
        planned = state.plan[state.plan_done]
        if planned.name == event.name and planned.arguments == event.arguments:
            state.plan_done += 1
    if state.approved:
        state.approved.pop(event.call, None)


def _tool_call_retrying(state: RunState, event: ToolCallRetrying) -> None:
    record = state.calls.get(event.call)
    if record is None:
        raise JournalError(f"run {state.run_id}: retry of call {event.call}, which never started")
    record.attempts = event.attempt


def _tool_call_finished(state: RunState, event: ToolCallFinished) -> None:
    record = state.calls.get(event.call)
    if record is None:  # rejected before it could start: unknown tool, invalid arguments
        state.tool_calls += 1
    else:
        if record.status == "finished":
            raise JournalError(f"run {state.run_id}: call {event.call} finished twice")
        record.status, record.finished = "finished", event
        del state.open_calls[event.call]
    if event.error is not None:
        state.tool_errors += 1
        if event.error.kind == "budget_spent":
            state.tools_spent = True
    state.messages.append(
        ToolResultMessage(
            call_id=event.tool_call_id, name=event.name, content=event.content, is_error=event.error is not None
        )
    )
    if event.call in state.attention:
        state.attention = tuple(c for c in state.attention if c != event.call)


def _call_retry_authorized(state: RunState, event: CallRetryAuthorized) -> None:
    record = state.calls.get(event.call)
    if record is None or record.status != "started":
        raise JournalError(f"run {state.run_id}: retry authorised for call {event.call}, which is not interrupted")
    record.retry_authorized = True
    state.attention = tuple(c for c in state.attention if c != event.call)


def _tool_call_resumed(state: RunState, event: ToolCallResumed) -> None:
    record = state.open_calls.get(event.call)
    if record is None:
        raise JournalError(f"run {state.run_id}: call {event.call} resumed, but it is not interrupted")
    record.attempts = event.attempt  # if this attempt is interrupted too, the next one is attempt + 1
    record.retry_authorized = False  # a person's "retry" covers one attempt


def _approval_requested(state: RunState, event: ApprovalRequested) -> None:
    if event.call in state.approvals or event.call in state.calls:
        raise JournalError(f"run {state.run_id}: call {event.call} gated twice")
    state.approvals[event.call] = Approval(requested=event)
    state.awaiting = (*state.awaiting, event.call)


def _pending(state: RunState, call: str, what: str) -> Approval:
    approval = state.approvals.get(call)
    if approval is None or approval.decision != "pending":
        raise JournalError(f"run {state.run_id}: call {call} {what}, but it is not waiting for a decision")
    state.awaiting = tuple(c for c in state.awaiting if c != call)
    return approval


def _call_approved(state: RunState, event: CallApproved) -> None:
    approval = _pending(state, event.call, "approved")
    approval.decision, approval.by = "approved", event.by
    approval.arguments = event.arguments if event.arguments is not None else approval.requested.arguments
    state.approved[event.call] = approval


def _call_rejected(state: RunState, event: CallRejected) -> None:
    approval = _pending(state, event.call, "rejected")
    approval.decision, approval.by, approval.reason = "rejected", event.by, event.reason


def _intervened(state: RunState, event: Intervened) -> None:
    state.interventions[event.rule] = state.interventions.get(event.rule, 0) + 1
    state.messages.append(UserMessage(text=event.message))
    if event.final:
        state.final_turn = event.final_reason or event.rule


def _context_compacted(state: RunState, event: ContextCompacted) -> None:
    state.compacted_upto = event.upto


def _rollback_started(state: RunState, event: RollbackStarted) -> None:
    state._to("rolling_back", "rollback", f"rolling back ({event.why}), by {event.by}")
    state.rolling_back = True
    state.attention = ()
    for call in event.calls:
        if call not in state.calls:
            raise JournalError(f"run {state.run_id}: rollback of call {call}, which never ran")
        state.rollback.pop(call, None)  # a retried compensation goes to the end, in the order given
        state.rollback[call] = Undo(call=call)


def _undo(state: RunState, call: str) -> Undo:
    undo = state.rollback.get(call)
    if undo is None or not state.rolling_back:
        raise JournalError(f"run {state.run_id}: compensation of call {call}, which no rollback undoes")
    return undo


def _compensation_started(state: RunState, event: CompensationStarted) -> None:
    undo = _undo(state, event.call)
    undo.status, undo.attempts = "started", event.attempt


def _compensation_finished(state: RunState, event: CompensationFinished) -> None:
    undo = _undo(state, event.call)
    undo.finished = event
    if event.error is None:
        undo.status = "done"
    elif event.resolved_by:
        undo.status = "settled"
    else:
        undo.status = "missing" if event.error.kind == "no_compensation" else "failed"
    if event.call in state.attention:
        state.attention = tuple(c for c in state.attention if c != event.call)


def _note_written(state: RunState, event: NoteWritten) -> None:
    state.notes[event.key] = event.value


def _run_paused(state: RunState, event: RunPaused) -> None:
    state._to("paused", event.reason, event.detail)
    if event.reason in ("needs_attention", "rollback_incomplete"):
        state.attention = event.calls
    elif event.reason == "waiting_for_subagent":
        state.waiting_on = event.calls


def _run_resumed(state: RunState, event: RunResumed) -> None:
    state.waiting_on = ()
    state._to("rolling_back" if state.rolling_back else "running", "rollback" if state.rolling_back else "")


def _run_ended(state: RunState, event: RunEnded) -> None:
    state._to(event.status, event.reason, event.error)
    if event.status == "rolled_back":
        state.rolling_back = False
        return  # the run's answer stays the one it gave
    state.output = event.output
    state.attention = state.awaiting = ()  # an ended run waits for no decision (a paused run may be cancelled)


def _run_started(state: RunState, event: RunStarted) -> None:
    raise JournalError(f"run {state.run_id}: a second run_started")


APPLY: dict[str, Callable[[RunState, Any], None]] = {
    "run_started": _run_started,
    "model_responded": _model_responded,
    "model_retrying": _model_retrying,
    "tool_call_started": _tool_call_started,
    "tool_call_retrying": _tool_call_retrying,
    "tool_call_finished": _tool_call_finished,
    "call_retry_authorized": _call_retry_authorized,
    "tool_call_resumed": _tool_call_resumed,
    "approval_requested": _approval_requested,
    "call_approved": _call_approved,
    "call_rejected": _call_rejected,
    "intervened": _intervened,
    "context_compacted": _context_compacted,
    "call_previewed": _call_previewed,
    "step_finished": _step_finished,
    "rollback_started": _rollback_started,
    "compensation_started": _compensation_started,
    "compensation_finished": _compensation_finished,
    "note_written": _note_written,
    "run_paused": _run_paused,
    "run_resumed": _run_resumed,
    "run_ended": _run_ended,
}
