"""The journal's events for the controls: approval gates, the engine's interventions, compaction, dry-run plans
and rollback. ``events.py`` puts them in the ``Event`` union with the others; the ordering rules it states hold
for these too.
"""

from __future__ import annotations

from typing import Any, Literal

from agentkeel.core.failures import ToolFailure
from agentkeel.core.record import record

RunMode = Literal["normal", "dry_run", "apply", "pipeline"]
"""``pipeline``: a deterministic workflow whose steps are journaled (``patterns/pipeline.py``);
``dry_run``: write tools are only previewed, and the run's write calls make a plan; ``apply``: the run may make
exactly the calls of an approved plan, in order (``RunStarted.plan``)."""


@record
class PlannedCall:
    """One write call of a plan: what a dry run would have done, and what its tool's preview said."""

    call: str
    """Its id in the dry run."""
    name: str
    arguments: dict[str, Any]
    preview: Any = None
    """What the tool's preview returned (JSON), or ``None`` when the tool has no preview."""
    has_preview: bool = False


@record
class ApprovalRequested:
    """A call that a gate holds for a person's decision; committed with the response that asked for it. The call
    runs only after a ``CallApproved`` (then with a ``ToolCallStarted`` of its own, like any call)."""

    kind: Literal["approval_requested"] = "approval_requested"
    at: float
    call: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    """The arguments after validation, as the model gave them."""
    idempotency_key: str
    why: str
    """The rule that gated it, for the person deciding (``refunds above $100``)."""


@record
class CallApproved:
    """A person approved a gated call, optionally with edited arguments (already validated)."""

    kind: Literal["call_approved"] = "call_approved"
    at: float
    call: str
    by: str
    arguments: dict[str, Any] | None = None
    """The edited arguments the call runs with, or ``None`` for the model's own."""


@record
class CallRejected:
    """A person rejected a gated call; the model is told so, with the reason, and the call never runs."""

    kind: Literal["call_rejected"] = "call_rejected"
    at: float
    call: str
    by: str
    reason: str


@record
class Intervened:
    """The engine spoke to the model (a loop, a budget): the message joins the conversation as a user turn."""

    kind: Literal["intervened"] = "intervened"
    at: float
    rule: str
    """``repeated_call``, ``repeated_error``, ``no_progress``, ``budget``, ..."""
    message: str
    """What the model reads."""
    evidence: str = ""
    """What the engine saw, for the operator."""
    final: bool = False
    """The next model turn is the run's last, without tools: then the run ends ``failed(final_reason)``."""
    final_reason: str = ""


@record
class ContextCompacted:
    """From now on the model sees the conversation's older tool results as short digests (the journal keeps
    them whole). Messages before index ``upto`` are compacted; the task and the notes always stay verbatim."""

    kind: Literal["context_compacted"] = "context_compacted"
    at: float
    upto: int
    tokens_before: int
    """The estimated prompt size before compaction."""
    tokens_after: int


@record
class CallPreviewed:
    """In a dry run: a write call that was not made; its tool's preview (if any) stood in for it. Committed with
    the response that asked for it; the model reads ``content``."""

    kind: Literal["call_previewed"] = "call_previewed"
    at: float
    call: str
    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    content: str
    preview: Any = None
    has_preview: bool = False


@record
class RollbackStarted:
    """The undoing of a run's effects begins: its finished write calls are compensated in reverse order. It may
    follow the run's end (``keel rollback``, or the agent's ``rollback_on`` policy when it fails or is cancelled)."""

    kind: Literal["rollback_started"] = "rollback_started"
    at: float
    by: str
    why: str
    calls: tuple[str, ...]
    """The calls to undo, in the order their compensations run (the last effect first)."""


@record
class CompensationStarted:
    """A call's compensation is about to run (committed first: a crash during it reruns it on resume, so a
    compensation must be safe to run twice, under its idempotency key)."""

    kind: Literal["compensation_started"] = "compensation_started"
    at: float
    call: str
    attempt: int = 1


@record
class CompensationFinished:
    """A call's compensation ran (``error`` empty), failed, or could not run (no compensation declared); or a
    person settled it (``resolved_by``)."""

    kind: Literal["compensation_finished"] = "compensation_finished"
    at: float
    call: str
    content: str
    result: Any = None
    error: ToolFailure | None = None
    resolved_by: str = ""


@record
class StepFinished:
    """A pipeline's step, done: its result (JSON), and what its model calls used. A resumed pipeline takes the
    result from here instead of running the step again."""

    kind: Literal["step_finished"] = "step_finished"
    at: float
    key: str
    """The step's name in its pipeline (``summaries[12]``, ``route``): unique within the run."""
    result: Any = None
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
