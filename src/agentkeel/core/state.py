"""``RunState``: everything known about a run, derived from its journal by a fold.

``replay(events)`` rebuilds the state from nothing; ``state.apply(event)`` moves it one event forward. The
fold calls no model, runs no tool and reads no clock, so replaying a journal is deterministic and cheap.

Status transitions (the only ones allowed; any other is a corrupt or diverging journal):

    running   -> paused | completed | failed | cancelled | running (a resume after a crash)
    paused    -> running (resumed) | completed | failed | cancelled | rolling_back
    completed, failed, cancelled -> rolling_back (a rollback, the only event after a run's end)
    rolling_back -> rolled_back | paused (a compensation failed or is missing) | rolling_back (a resume)
    rolled_back: terminal
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentkeel.core.calls import Approval, CallRecord, Undo
from agentkeel.core.events import (
    TERMINAL_STATUSES,
    Event,
    PlannedCall,
    RunStarted,
    RunStatus,
)
from agentkeel.core.messages import Conversation, Message, Usage, UserMessage
from agentkeel.errors import JournalError

TRANSITIONS: dict[str, frozenset[str]] = {
    "running": frozenset({"running", "paused", "completed", "failed", "cancelled", "rolling_back"}),
    "paused": frozenset({"running", "completed", "failed", "cancelled", "rolling_back"}),
    "completed": frozenset({"rolling_back"}),
    "failed": frozenset({"rolling_back"}),
    "cancelled": frozenset({"rolling_back"}),
    "rolling_back": frozenset({"rolling_back", "paused", "rolled_back"}),
    "rolled_back": frozenset(),
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
    trace_parent: str | None = None
    """Where the run's trace nests (``RunStarted.trace_parent``)."""
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
    waiting_on: tuple[str, ...] = ()
    """Delegation calls whose child runs wait for a person (``paused(waiting_for_subagent)``)."""
    """Approved calls that have not started yet."""
    tool_counts: dict[str, int] = field(default_factory=dict)
    """Calls started, per tool."""
    interventions: dict[str, int] = field(default_factory=dict)
    """Messages the engine gave the model, per rule (loops, budgets)."""
    tools_spent: bool = False
    """A tool call was refused because the run's ``tool_calls`` budget is spent: the run ends before its next
    model call (after a last turn without tools, with ``Budget(wrap_up=True)``)."""
    final_turn: str = ""
    """Set when the next model turn is the last (no tools): the reason the run then fails with."""
    mode: str = "normal"
    """``normal``, ``dry_run`` (write tools are previewed, making a plan) or ``apply`` (an approved plan)."""
    plan: list[PlannedCall] = field(default_factory=list)
    """In a dry run: the write calls it would have made, in order; in ``apply`` mode: the approved plan."""
    plan_of: str | None = None
    plan_done: int = 0
    """In ``apply`` mode: how many calls of the plan have started."""
    steps: dict[str, Any] = field(default_factory=dict)
    """A pipeline's finished steps: their results, by key."""
    rollback: dict[str, Undo] = field(default_factory=dict)
    """The calls a rollback undoes (or undid), in the order their compensations run."""
    rolling_back: bool = False
    """A rollback has started and not ended: resuming the run continues it."""
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
        return bool(self.attention or self.awaiting or self.waiting_on)

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
        if self.status in TERMINAL_STATUSES and (event.kind != "rollback_started" or self.status == "rolled_back"):
            raise JournalError(f"run {self.run_id}: event {event.kind!r} after the run ended ({self.status})")
        self.last_seq += 1
        at = event.at
        self.updated_at = at
        # Nobody drives a run in the gap before a resume, nor while it is paused waiting for a person.
        if at > self.segment_start and self.status != "paused" and event.kind != "run_resumed":
            self.active_s += at - self.segment_start
        self.segment_start = at
        APPLY[event.kind](self, event)

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
        trace_parent=first.trace_parent,
        mode=first.mode,
        plan=list(first.plan),
        plan_of=first.plan_of,
        started_at=first.at,
        updated_at=first.at,
        segment_start=first.at,
        last_seq=1,
        messages=[UserMessage(text=first.task)],
    )
    for event in events[1:]:
        state.apply(event)
    return state


from agentkeel.core.fold import APPLY  # noqa: E402  (the handlers take a RunState: defined above)
