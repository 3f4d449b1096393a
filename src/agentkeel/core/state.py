"""``RunState``: everything known about a run, derived from its journal by a fold.

``replay(events)`` rebuilds the state from nothing; ``state.apply(event)`` moves it one event forward. The
fold calls no model, runs no tool and reads no clock, so replaying a journal is deterministic and cheap.

Status transitions (the only ones allowed; any other is a corrupt or diverging journal):

    running   -> paused | completed | failed | cancelled | running (a resume after a crash)
    paused    -> running (resumed) | completed | failed | cancelled
    completed, failed, cancelled: terminal
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentkeel.core.calls import Approval, CallRecord
from agentkeel.core.events import (
    TERMINAL_STATUSES,
    ApprovalRequested,
    CallApproved,
    CallRejected,
    CallRetryAuthorized,
    ContextCompacted,
    Event,
    Intervened,
    ModelResponded,
    ModelRetrying,
    NoteWritten,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    RunStatus,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
)
from agentkeel.core.messages import Conversation, Message, ToolResultMessage, Usage, UserMessage
from agentkeel.errors import JournalError

TRANSITIONS: dict[str, frozenset[str]] = {
    "running": frozenset({"running", "paused", "completed", "failed", "cancelled"}),
    "paused": frozenset({"running", "completed", "failed", "cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


@dataclass(kw_only=True, slots=True)
class RunState:
    """A run as its journal tells it. Built only by :func:`replay` and :meth:`apply`."""

    run_id: str
    agent: str
    task: str
    """The original task, verbatim."""
    model: str
    instructions: str
    max_steps: int
    timeout_s: float | None
    tools: tuple[str, ...]
    agent_ref: str
    parent_id: str | None
    status: RunStatus = "running"
    reason: str = ""
    """Why the run is paused, failed or cancelled (empty while running and once completed)."""
    detail: str = ""
    """A sentence for the operator about the status: the pause's request, the failure's figures."""
    output: str = ""
    steps_completed: int = 0
    """Model turns taken (each turn and the tool calls it asked for is one step)."""
    notes: dict[str, str] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    """The conversation as the model sees it, rebuilt from the journal (append-only)."""
    memo: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """A cache shared by the views of the conversation (see :class:`Conversation`): not journal state."""
    calls: dict[str, CallRecord] = field(default_factory=dict)
    open_calls: dict[str, CallRecord] = field(default_factory=dict)
    """Calls started and not finished, in start order (kept apart so that a long run's step stays O(1))."""
    attention: tuple[str, ...] = ()
    """Calls a person must resolve before the run can go on (``paused(needs_attention)``)."""
    approvals: dict[str, Approval] = field(default_factory=dict)
    """Every gated call of the run and its decision."""
    awaiting: tuple[str, ...] = ()
    """Gated calls waiting for a person's decision (``paused(awaiting_approval)``)."""
    approved: dict[str, Approval] = field(default_factory=dict)
    """Approved calls that have not started yet."""
    tool_counts: dict[str, int] = field(default_factory=dict)
    """Calls started, per tool."""
    interventions: dict[str, int] = field(default_factory=dict)
    """Messages the engine gave the model, per rule (loops, budgets)."""
    final_turn: str = ""
    """Set when the next model turn is the last (no tools): the reason the run then fails with."""
    compacted_upto: int = 0
    """Messages before this index reach the model as digests (``ContextCompacted``)."""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    last_input_tokens: int = 0
    """The prompt size the model reported for its last turn: about the size of the next prompt."""
    model_calls: int = 0
    model_retries: int = 0
    """Failed model attempts that were retried (rate limits, server errors, ...)."""
    tool_calls: int = 0
    tool_errors: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0
    active_s: float = 0.0
    """Seconds the run has been driven, summed over every process that drove it."""
    segment_start: float = 0.0
    last_seq: int = 0
    """The sequence number of the last event applied (the journal's length)."""

    @property
    def usage(self) -> Usage:
        """Tokens used by every model call of the run."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
        )

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def in_flight(self) -> list[CallRecord]:
        """Calls that started and have no outcome: after a crash, these are the ones to resolve."""
        return list(self.open_calls.values())

    @property
    def waiting(self) -> bool:
        """Whether the run waits for a person: an interrupted call to resolve, or a gated call to decide."""
        return bool(self.attention or self.awaiting)

    def conversation(self) -> Conversation:
        """The conversation so far, as a view that costs nothing to make."""
        return Conversation(self.messages, self.memo)

    @property
    def last_model_text(self) -> str:
        for message in reversed(self.messages):
            if message.kind == "assistant" and message.text:
                return message.text
        return ""

    def apply(self, event: Event) -> None:
        """Move the state one event forward."""
        if self.status in TERMINAL_STATUSES:
            raise JournalError(f"run {self.run_id}: event {event.kind!r} after the run ended ({self.status})")
        self.last_seq += 1
        at = event.at
        self.updated_at = at
        # Nobody drives a run in the gap before a resume, nor while it is paused waiting for a person.
        if at > self.segment_start and self.status != "paused" and event.kind != "run_resumed":
            self.active_s += at - self.segment_start
        self.segment_start = at
        _APPLY[event.kind](self, event)

    def _to(self, status: RunStatus, reason: str = "", detail: str = "") -> None:
        if status not in TRANSITIONS[self.status]:
            raise JournalError(f"run {self.run_id}: status cannot go from {self.status} to {status}")
        self.status, self.reason, self.detail = status, reason, detail


def replay(events: list[Event] | tuple[Event, ...]) -> RunState:
    """Rebuild a run's state from its journal."""
    if not events or events[0].kind != "run_started":
        raise JournalError("a journal must begin with run_started")
    first = events[0]
    assert isinstance(first, RunStarted)
    state = RunState(
        run_id=first.run_id,
        agent=first.agent,
        task=first.task,
        model=first.model,
        instructions=first.instructions,
        max_steps=first.max_steps,
        timeout_s=first.timeout_s,
        tools=first.tools,
        agent_ref=first.agent_ref,
        parent_id=first.parent_id,
        started_at=first.at,
        updated_at=first.at,
        segment_start=first.at,
        last_seq=1,
        messages=[UserMessage(text=first.task)],
    )
    for event in events[1:]:
        state.apply(event)
    return state


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


def _tool_call_started(state: RunState, event: ToolCallStarted) -> None:
    state.tool_calls += 1
    state.tool_counts[event.name] = state.tool_counts.get(event.name, 0) + 1
    state.calls[event.call] = state.open_calls[event.call] = CallRecord(started=event)
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


def _note_written(state: RunState, event: NoteWritten) -> None:
    state.notes[event.key] = event.value


def _run_paused(state: RunState, event: RunPaused) -> None:
    state._to("paused", event.reason, event.detail)
    if event.reason == "needs_attention":
        state.attention = event.calls


def _run_resumed(state: RunState, event: RunResumed) -> None:
    state._to("running")


def _run_ended(state: RunState, event: RunEnded) -> None:
    state._to(event.status, event.reason, event.error)
    state.output = event.output
    state.attention = state.awaiting = ()  # an ended run waits for no decision (a paused run may be cancelled)


def _run_started(state: RunState, event: RunStarted) -> None:
    raise JournalError(f"run {state.run_id}: a second run_started")


_APPLY: dict[str, Callable[[RunState, Any], None]] = {
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
    "note_written": _note_written,
    "run_paused": _run_paused,
    "run_resumed": _run_resumed,
    "run_ended": _run_ended,
}
