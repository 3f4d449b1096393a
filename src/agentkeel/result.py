"""``RunResult``: what a caller gets back from a run, whatever happened in it."""

from __future__ import annotations

from dataclasses import dataclass

from agentkeel.core.events import PlannedCall
from agentkeel.core.messages import Usage
from agentkeel.core.state import RunState


@dataclass(frozen=True, kw_only=True, slots=True)
class RunResult:
    """The outcome of driving a run: its status with a reason, the answer, and what it cost."""

    run_id: str
    status: str
    """``completed``, ``paused``, ``failed``, ``cancelled`` (or ``running`` if another process drives it)."""
    reason: str
    """Why it is paused, failed or cancelled: ``max_steps_exceeded``, ``timeout``, ``model_error``, ..."""
    output: str
    """The final answer (or the last thing the agent said, for a run that did not complete)."""
    detail: str
    """A sentence for the operator about the status (the limit and the value; what to do)."""
    steps: int
    usage: Usage
    cost_usd: float
    model_calls: int
    tool_calls: int
    tool_errors: int
    duration_s: float
    """Time the run was driven, summed over every process that drove it."""
    needs_attention: tuple[str, ...] = ()
    """Interrupted calls a person must resolve (``keel resolve``)."""
    awaiting_approval: tuple[str, ...] = ()
    """Gated calls waiting for a person's decision (``keel approve`` / ``keel reject``)."""
    mode: str = "normal"
    """``normal``, ``dry_run`` or ``apply``."""
    plan: tuple[PlannedCall, ...] = ()
    """A dry run's plan: the write calls it would have made, in order, with their previews."""

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @classmethod
    def of(cls, state: RunState) -> RunResult:
        return cls(
            run_id=state.run_id,
            status=state.status,
            reason=state.reason,
            output=state.output or (state.last_model_text if state.status != "completed" else ""),
            detail=state.detail,
            steps=state.steps_completed,
            usage=state.usage,
            cost_usd=state.cost_usd,
            model_calls=state.model_calls,
            tool_calls=state.tool_calls,
            tool_errors=state.tool_errors,
            duration_s=state.active_s,
            needs_attention=state.attention,
            awaiting_approval=state.awaiting,
            mode=state.mode,
            plan=tuple(state.plan) if state.mode == "dry_run" else (),
        )

    def __str__(self) -> str:
        status = f"{self.status}({self.reason})" if self.reason else self.status
        return (
            f"run {self.run_id}: {status} after {self.steps} steps, {self.usage.total_tokens} tokens, "
            f"${self.cost_usd:.4f}"
        )
