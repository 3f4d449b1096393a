"""What a person does to a run from outside its driver: resolve an interrupted call, decide a gated call, cancel
the run.

Each takes the run's lease for the moment it writes, so it never races a live driver: while one drives the run,
these raise ``RunBusy`` (resolving) or leave a request the driver honours before its next call (cancelling).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Literal

from agentkeel.core.decide import cancelled
from agentkeel.core.events import (
    CallApproved,
    CallRejected,
    CallRetryAuthorized,
    CompensationFinished,
    Event,
    ToolCallFinished,
    ToolFailure,
)
from agentkeel.core.state import RunState, replay
from agentkeel.engine.tool_runner import result_text
from agentkeel.errors import ResolveError, RunBusy
from agentkeel.stores.base import DEFAULT_LEASE_S, CancelRequest, Store, commit_events

Decision = Literal["result", "retry", "skip"]

SKIPPED_MESSAGE = (
    "{tool} was interrupted and an operator chose to skip it: it may not have taken effect. Do not assume it did; "
    "check before you call it again."
)


async def resolve_call(
    store: Store, run_id: str, call: str, decision: Decision, *, result: Any = None, by: str
) -> RunState:
    """Record a person's decision about an interrupted call of a ``paused(needs_attention)`` run."""
    if decision not in ("result", "retry", "skip"):
        raise ResolveError(f"unknown decision {decision!r}: use result, retry or skip")
    if decision == "result":
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            raise ResolveError(f"the result must be JSON: {exc}") from exc

    def events(state: RunState) -> list[Event]:
        record = state.calls[call]
        now = time.time()
        if state.rolling_back:
            return [_settle_undo(state, call, decision, result, by, now)]
        if decision == "retry":
            return [CallRetryAuthorized(at=now, call=call, by=by)]
        if decision == "skip":
            message = SKIPPED_MESSAGE.format(tool=record.name)
            content, value, error = message, None, ToolFailure(kind="skipped", message=message)
        else:
            content, value, error = result_text(result), result, None
        finished = ToolCallFinished(
            at=now,
            call=call,
            tool_call_id=record.tool_call_id,
            name=record.name,
            content=content,
            result=value,
            error=error,
            attempts=record.attempts,
            resolved_by=by,
        )
        return [finished]

    return await _decide(store, run_id, call, by, events, approval=False)


def _settle_undo(state: RunState, call: str, decision: Decision, result: Any, by: str, now: float) -> Event:
    """A person's word on a call a rollback could not undo: undone by hand (with what it did), or left as is."""
    if decision == "retry":
        raise ResolveError(
            f"run {state.run_id}: to try the compensation of {call} again, run `keel rollback {state.run_id}`"
        )
    if decision == "skip":
        message = f"{state.calls[call].name} ({call}) is left as it is: {by} chose not to undo it"
        return CompensationFinished(
            at=now, call=call, content=message, error=ToolFailure(kind="skipped", message=message), resolved_by=by
        )
    return CompensationFinished(at=now, call=call, content=result_text(result), result=result, resolved_by=by)


async def cancel_run(store: Store, run_id: str, *, by: str, reason: str) -> RunState:
    """Cancel a run. A live driver stops before its next model or tool call; an idle run ends at once."""
    request = CancelRequest(by=by, reason=reason, at=time.time())
    await store.request_cancel(run_id, request)
    owner = f"operator:{by}"
    try:
        await store.acquire_lease(run_id, owner, DEFAULT_LEASE_S)
    except RunBusy:
        return replay(await store.load(run_id))  # the driver ends it
    try:
        state = replay(await store.load(run_id))
        if state.terminal:
            return state
        await commit_events(store, state, owner, [cancelled(state, by=by, why=reason, at=time.time())])
        return state
    finally:
        await store.release_lease(run_id, owner)


REJECTED_MESSAGE = (
    "{tool} was not run: {by} rejected the call ({reason}). Do not call it again unchanged; take the reason into "
    "account, or tell the user it was not approved."
)


async def approve_call(
    store: Store,
    run_id: str,
    call: str,
    *,
    by: str,
    arguments: dict[str, Any] | None = None,
) -> RunState:
    """Record a person's approval of a gated call (``arguments``: edited ones, already validated by the caller).
    The call runs when the run is resumed, in any process."""

    def events(state: RunState) -> list[Event]:
        return [CallApproved(at=time.time(), call=call, by=by, arguments=arguments)]

    return await _decide(store, run_id, call, by, events, approval=True)


async def reject_call(store: Store, run_id: str, call: str, *, by: str, reason: str) -> RunState:
    """Record a person's rejection of a gated call: the model is told, with the reason; the call never runs."""
    if not reason.strip():
        raise ResolveError("say why the call is rejected (--reason TEXT): the agent reads it")

    def events(state: RunState) -> list[Event]:
        requested = state.approvals[call].requested
        now = time.time()
        message = REJECTED_MESSAGE.format(tool=requested.name, by=by, reason=reason)
        return [
            CallRejected(at=now, call=call, by=by, reason=reason),
            ToolCallFinished(
                at=now,
                call=call,
                tool_call_id=requested.tool_call_id,
                name=requested.name,
                content=message,
                error=ToolFailure(kind="rejected", message=message),
                attempts=0,
                resolved_by=by,
            ),
        ]

    return await _decide(store, run_id, call, by, events, approval=True)


async def _decide(
    store: Store, run_id: str, call: str, by: str, events: Callable[[RunState], list[Event]], *, approval: bool
) -> RunState:
    """Under the run's lease (so no live driver races it): check that ``call`` waits for this kind of decision,
    then journal the decision's events."""
    owner = f"operator:{by}"
    await store.acquire_lease(run_id, owner, DEFAULT_LEASE_S)
    try:
        state = replay(await store.load(run_id))
        waiting_calls = state.awaiting if approval else state.attention
        if call not in waiting_calls:
            waiting = ", ".join(waiting_calls) or "none"
            what = "approval" if approval else "a decision"
            raise ResolveError(
                f"run {run_id}: call {call!r} is not waiting for {what} (calls waiting: {waiting}; the run is "
                f"{state.status}{'(' + state.reason + ')' if state.reason else ''})"
            )
        await commit_events(store, state, owner, events(state))
        return state
    finally:
        await store.release_lease(run_id, owner)
