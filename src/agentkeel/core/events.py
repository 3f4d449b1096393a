"""The journal's events: small frozen records, appended in order, never changed.

A run *is* its journal. Each event is keyed by (run id, sequence number) in the store; the engine rebuilds the
conversation and the state from them without calling any model or tool (see ``state.py``).

Ordering rules the engine keeps (and the crash tests check):

* ``ModelResponded`` is committed together with the ``ToolCallStarted`` events of the calls it asked for (and
  with ``ToolCallFinished`` for calls rejected before they ran: unknown tool, invalid arguments), so the intent
  to call a tool is durable *before* the tool runs.
* ``ToolCallFinished`` is committed before the next model call.
* A run's last event is ``RunEnded``; nothing is appended after it.

Times (``at``) are seconds since the epoch, supplied by the runner: the core reads no clock.
"""

from __future__ import annotations

from typing import Any, Literal

from agentkeel.core.control_events import (
    ApprovalRequested,
    CallApproved,
    CallPreviewed,
    CallRejected,
    CompensationFinished,
    CompensationStarted,
    ContextCompacted,
    Intervened,
    PlannedCall,
    RollbackStarted,
    RunMode,
    StepFinished,
)
from agentkeel.core.failures import FailureKind, ToolFailure
from agentkeel.core.messages import ModelResponse
from agentkeel.core.record import record

__all__ = [
    "TERMINAL_STATUSES",
    "ApprovalRequested",
    "CallApproved",
    "CallPreviewed",
    "CallRejected",
    "CallRetryAuthorized",
    "CompensationFinished",
    "CompensationStarted",
    "ContextCompacted",
    "Event",
    "FailureKind",
    "Intervened",
    "ModelResponded",
    "ModelRetrying",
    "NoteWritten",
    "PlannedCall",
    "RollbackStarted",
    "RunEnded",
    "RunMode",
    "RunPaused",
    "RunResumed",
    "RunStarted",
    "RunStatus",
    "StepFinished",
    "ToolCallFinished",
    "ToolCallResumed",
    "ToolCallRetrying",
    "ToolCallStarted",
    "ToolFailure",
]

RunStatus = Literal["running", "paused", "completed", "failed", "cancelled", "rolling_back", "rolled_back"]
"""Where a run stands. ``paused``, ``failed`` and ``cancelled`` always come with a reason."""

TERMINAL_STATUSES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "rolled_back"})
"""Nothing follows, except that a completed, failed or cancelled run may still be rolled back."""


@record
class RunStarted:
    """The first event of every run: the task and the configuration it runs under."""

    kind: Literal["run_started"] = "run_started"
    at: float
    run_id: str
    agent: str
    """The agent's name."""
    task: str
    """The original task, verbatim."""
    model: str
    """The model as configured (``provider:name``)."""
    instructions: str = ""
    max_steps: int = 25
    timeout_s: float | None = None
    """The wall-clock limit on the time the run is driven (summed over resumes), if any."""
    tools: tuple[str, ...] = ()
    """The names of the tools the agent had; a resume with a different tool set is refused."""
    agent_ref: str = ""
    """Where to load the agent from (``path/to/file.py:name`` or ``module:name``), so ``keel resume`` can."""
    parent_id: str | None = None
    """The run that started this one (subagents)."""
    trace_parent: str | None = None
    """The W3C ``traceparent`` of the span this run nests under (a supervisor's delegation, a bus message, the
    caller's active span); None: the run is a trace of its own, whose id derives from the run id."""
    mode: RunMode = "normal"
    plan: tuple[PlannedCall, ...] = ()
    """In ``apply`` mode: the approved plan, the only write calls the run may make, in this order."""
    plan_of: str | None = None
    """In ``apply`` mode: the dry run the plan comes from."""
    approved_by: str = ""
    """In ``apply`` mode: who approved the plan."""


@record
class ModelResponded:
    """A model call that returned. Its response is never requested again."""

    kind: Literal["model_responded"] = "model_responded"
    at: float
    step: int
    """The step this response opens (1-based): one model turn and the tool calls it asked for."""
    response: ModelResponse
    latency_s: float = 0.0
    cost_usd: float = 0.0


@record
class ModelRetrying:
    """A model call failed transiently (rate limit, server error, timeout); another attempt follows."""

    kind: Literal["model_retrying"] = "model_retrying"
    at: float
    step: int
    attempt: int
    """The attempt that failed (1-based)."""
    error_kind: str
    """``rate_limit``, ``server``, ``timeout``, ``connection``, ..."""
    message: str
    """The provider's message."""
    delay_s: float


@record
class ToolCallStarted:
    """The intent to run a validated tool call, committed before the tool runs."""

    kind: Literal["tool_call_started"] = "tool_call_started"
    at: float
    call: str
    """The call's id in this run: ``"<step>.<index>"`` (what ``keel resolve`` takes)."""
    tool_call_id: str
    """The provider's id for the call."""
    name: str
    arguments: dict[str, Any]
    """The arguments after validation (JSON values)."""
    idempotency_key: str
    """Stable for this call across retries and resumes."""


@record
class ToolCallRetrying:
    """A transient failure of one attempt; another attempt follows after ``delay_s``."""

    kind: Literal["tool_call_retrying"] = "tool_call_retrying"
    at: float
    call: str
    attempt: int
    """The attempt that failed (1-based)."""
    error: ToolFailure
    delay_s: float


@record
class ToolCallFinished:
    """A tool call's outcome: a result, or a failure the model can act on."""

    kind: Literal["tool_call_finished"] = "tool_call_finished"
    at: float
    call: str
    tool_call_id: str
    name: str
    content: str
    """What the model reads: the result as text, or an actionable error message."""
    result: Any = None
    """The tool's return value as JSON (``None`` on failure)."""
    error: ToolFailure | None = None
    attempts: int = 1
    latency_s: float = 0.0
    resolved_by: str = ""
    """Set when a person supplied the outcome of an interrupted call (``keel resolve``)."""


@record
class CallRetryAuthorized:
    """A person decided that an interrupted call may run again (``keel resolve --retry``)."""

    kind: Literal["call_retry_authorized"] = "call_retry_authorized"
    at: float
    call: str
    by: str


@record
class ToolCallResumed:
    """An interrupted call runs again (after a crash): committed before the new attempt starts, so that a crash
    during it is itself an interruption (an authorised retry covers one attempt, not every later one)."""

    kind: Literal["tool_call_resumed"] = "tool_call_resumed"
    at: float
    call: str
    attempt: int
    """The attempt that starts now (1-based)."""
    why: str
    """``read``, ``idempotent``, ``authorized`` (a person said retry) or ``reconciled`` (the hook said it did not
    happen)."""


@record
class NoteWritten:
    """The agent's scratchpad: notes survive compaction and resume."""

    kind: Literal["note_written"] = "note_written"
    at: float
    key: str
    value: str


@record
class RunPaused:
    """The run waits for a person; the driving process may exit."""

    kind: Literal["run_paused"] = "run_paused"
    at: float
    reason: str
    """``needs_attention``, ``awaiting_approval``, ..."""
    detail: str = ""
    """A sentence for the operator: what is needed and the command that gives it."""
    calls: tuple[str, ...] = ()


@record
class RunResumed:
    """A process took the run over (after a crash, or after a pause was resolved)."""

    kind: Literal["run_resumed"] = "run_resumed"
    at: float
    owner: str
    """Who drives it now (host and process)."""


@record
class RunEnded:
    """The last event of a run."""

    kind: Literal["run_ended"] = "run_ended"
    at: float
    status: Literal["completed", "failed", "cancelled", "rolled_back"]
    reason: str = ""
    """Empty for ``completed``; otherwise a stable token (``max_steps_exceeded``, ``timeout``, ...)."""
    output: str = ""
    """The agent's final answer (also the partial answer of a failed run, when there is one)."""
    error: str = ""
    """A sentence for the operator: what limit, what value, what to do."""
    by: str = ""
    """Who ended it, for cancellations."""


Event = (
    RunStarted
    | ModelResponded
    | ModelRetrying
    | ToolCallStarted
    | ToolCallRetrying
    | ToolCallFinished
    | CallRetryAuthorized
    | ToolCallResumed
    | ApprovalRequested
    | CallApproved
    | CallRejected
    | Intervened
    | ContextCompacted
    | StepFinished
    | CallPreviewed
    | RollbackStarted
    | CompensationStarted
    | CompensationFinished
    | NoteWritten
    | RunPaused
    | RunResumed
    | RunEnded
)
"""Any journal event. The ``kind`` field discriminates them in JSON."""
