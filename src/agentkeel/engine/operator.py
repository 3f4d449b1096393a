"""What a person does to a run from outside its driver: resolve an interrupted call, cancel the run.

Each takes the run's lease for the moment it writes, so it never races a live driver: while one drives the run,
these raise ``RunBusy`` (resolving) or leave a request the driver honours before its next call (cancelling).
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from agentkeel.core.decide import cancelled
from agentkeel.core.events import CallRetryAuthorized, Event, ToolCallFinished, ToolFailure
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
    owner = f"operator:{by}"
    await store.acquire_lease(run_id, owner, DEFAULT_LEASE_S)
    try:
        state = replay(await store.load(run_id))
        if call not in state.attention:
            waiting = ", ".join(state.attention) or "none"
            raise ResolveError(
                f"run {run_id}: call {call!r} is not waiting for a decision (calls waiting: {waiting}; "
                f"the run is {state.status}{'(' + state.reason + ')' if state.reason else ''})"
            )
        record = state.calls[call]
        now = time.time()
        event: Event
        if decision == "retry":
            event = CallRetryAuthorized(at=now, call=call, by=by)
        elif decision == "skip":
            message = SKIPPED_MESSAGE.format(tool=record.name)
            event = ToolCallFinished(
                at=now,
                call=call,
                tool_call_id=record.tool_call_id,
                name=record.name,
                content=message,
                error=ToolFailure(kind="skipped", message=message),
                attempts=record.attempts,
                resolved_by=by,
            )
        elif decision == "result":
            try:
                json.dumps(result)
            except (TypeError, ValueError) as exc:
                raise ResolveError(f"the result must be JSON: {exc}") from exc
            event = ToolCallFinished(
                at=now,
                call=call,
                tool_call_id=record.tool_call_id,
                name=record.name,
                content=result_text(result),
                result=result,
                attempts=record.attempts,
                resolved_by=by,
            )
        else:
            raise ResolveError(f"unknown decision {decision!r}: use result, retry or skip")
        await commit_events(store, state, owner, [event])
        return state
    finally:
        await store.release_lease(run_id, owner)


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
