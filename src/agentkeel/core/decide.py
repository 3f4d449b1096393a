"""The engine's decisions: given a run's state, what happens next.

``next_action`` is a pure function of the journaled state (and of how long the run has been driven, which the
runner measures): it performs nothing. The runner performs the action, journals its outcome, folds the new
events into the state and asks again. This is what makes a run resumable: a fresh process replays the journal
and asks the same question.
"""

from __future__ import annotations

from agentkeel.core.calls import Approval, CallRecord
from agentkeel.core.events import RunEnded
from agentkeel.core.messages import ModelResponse
from agentkeel.core.record import record
from agentkeel.core.state import RunState


@record
class CallModel:
    """Ask the model for step ``step``; ``final``: the run's last turn, without tools (see ``Intervened``)."""

    step: int
    final: bool = False


@record
class RunApproved:
    """Gated calls a person approved: start and run each (with the arguments as approved)."""

    calls: tuple[Approval, ...]


@record
class Compensate:
    """Run the compensation of a call (a rollback); ``attempt`` counts a rerun after a crash."""

    call: str
    attempt: int


@record
class Pause:
    """Stop and wait for a person (the pause is journaled, the lease let go of)."""

    reason: str
    detail: str
    calls: tuple[str, ...]


@record
class RecoverCalls:
    """Calls that started and never finished (the driver died): resolve each by its tool's contract."""

    calls: tuple[CallRecord, ...]


@record
class Finish:
    """End the run."""

    status: str
    reason: str = ""
    output: str = ""
    error: str = ""


@record
class Wait:
    """Nothing to do until a person acts: the run stays paused."""

    reason: str
    detail: str


@record
class Done:
    """The run has already ended."""


Action = CallModel | RecoverCalls | RunApproved | Compensate | Pause | Finish | Wait | Done


def next_action(state: RunState, *, driven_s: float) -> Action:
    """What the run does next. ``driven_s`` is the time it has been driven so far, this process included."""
    if state.terminal:
        return Done()
    if state.status == "paused" and state.waiting:
        return Wait(reason=state.reason, detail=state.detail)
    if state.rolling_back:
        return rollback_action(state)
    if state.open_calls:
        return RecoverCalls(calls=tuple(state.open_calls.values()))
    if state.approved:
        return RunApproved(calls=tuple(state.approved.values()))
    if state.awaiting:
        return Pause(reason="awaiting_approval", detail=awaiting_detail(state), calls=state.awaiting)
    if state.timeout_s is not None and driven_s >= state.timeout_s:
        return Finish(
            status="failed",
            reason="timeout",
            output=state.last_model_text,
            error=f"the run was driven for {driven_s:.1f}s, past its limit of {state.timeout_s:g}s "
            "(Agent(timeout=...))",
        )
    if state.steps_completed >= state.max_steps:
        return Finish(
            status="failed",
            reason="max_steps_exceeded",
            output=state.last_model_text,
            error=f"the agent took {state.steps_completed} steps without a final answer, its limit "
            f"(Agent(max_steps={state.max_steps})); read the run with `keel show {state.run_id}` to see where "
            "it went round",
        )
    return CallModel(step=state.steps_completed + 1, final=bool(state.final_turn))


def rollback_action(state: RunState) -> Action:
    """The next step of a rollback: the next compensation, in order; then the end, or a pause for a person when
    some call could not be undone."""
    for undo in state.rollback.values():
        if undo.open:
            return Compensate(call=undo.call, attempt=undo.attempts + 1)
    left = tuple(undo.call for undo in state.rollback.values() if undo.status in ("failed", "missing"))
    if left:
        listed = "; ".join(
            f"{call} {state.calls[call].name} ("
            f"{'no compensation declared' if state.rollback[call].status == 'missing' else 'its compensation failed'})"
            for call in left
        )
        detail = (
            f"the rollback could not undo: {listed}. Undo them by hand, then `keel resolve {state.run_id} CALL "
            f"--result JSON` (undone) or `--skip` (leave it as it is); `keel rollback {state.run_id}` tries the "
            "failed compensations again"
        )
        return Pause(reason="rollback_incomplete", detail=detail, calls=left)
    undone = [undo.call for undo in state.rollback.values() if undo.status == "done"]
    settled = [undo.call for undo in state.rollback.values() if undo.status == "settled"]
    error = f"undone: {', '.join(undone) or 'nothing'}" + (
        f"; settled by a person: {', '.join(settled)}" if settled else ""
    )
    return Finish(status="rolled_back", reason="rolled_back", output=state.output, error=error)


def awaiting_detail(state: RunState) -> str:
    """The sentence a paused(awaiting_approval) run shows: which calls, why, and the commands that decide."""
    listed = "; ".join(
        f"{call} {state.approvals[call].name} ({state.approvals[call].requested.why})" for call in state.awaiting
    )
    return (
        f"waiting for approval: {listed}. Decide each with `keel approve {state.run_id} CALL [--args JSON]` or "
        f"`keel reject {state.run_id} CALL --reason TEXT`; the run resumes after the last decision"
    )


def finish_if_answered(response: ModelResponse) -> Finish | None:
    """A response without tool calls is the agent's final answer."""
    if response.tool_calls:
        return None
    return Finish(status="completed", output=response.text)


def cancelled(state: RunState, *, by: str, why: str, at: float) -> RunEnded:
    """The end of a run someone cancelled: who, why, and what the agent had said so far."""
    return RunEnded(
        at=at,
        status="cancelled",
        reason="cancelled",
        output=state.last_model_text,
        error=f"cancelled by {by}: {why}",
        by=by,
    )
