"""Rollback: the compensations of a run's finished write calls, last effect first.

A rollback starts with ``RollbackStarted`` (the calls to undo, in order), after the run's end or from a pause:
``keel rollback RUN`` / ``Agent.rollback``, or the agent's ``rollback_on`` policy when a run fails or is
cancelled. The driver then runs each compensation like a call: ``CompensationStarted`` is committed first,
``CompensationFinished`` after. A crash in between reruns the compensation on resume, with the same idempotency
key (the call's plus ``:undo``), which is why a compensation must be safe to run twice. A call whose tool
declares no compensation, or whose compensation fails, is listed in a ``paused(rollback_incomplete)`` for a
person; otherwise the run ends ``rolled_back``.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from collections.abc import Collection, Mapping
from typing import Any

from agentkeel.core.events import RollbackStarted
from agentkeel.core.state import RunState
from agentkeel.errors import ConfigError
from agentkeel.tools.schema import takes_context
from agentkeel.tools.tool import RetryPolicy, Tool

POLICIES = frozenset({"failure", "cancel"})
"""When an agent rolls a run back by itself (``Agent(rollback_on=...)``)."""


def calls_to_undo(state: RunState, tools: Mapping[str, Tool]) -> tuple[str, ...]:
    """The run's write calls that took effect and are not undone yet, the last one first."""
    undone = {call for call, undo in state.rollback.items() if undo.status in ("done", "settled")}
    calls = []
    for record in state.calls.values():
        finished = record.finished
        tool = tools.get(record.name)
        if finished is None or finished.error is not None or record.call in undone:
            continue
        if tool is None or tool.effect == "write":  # an unknown tool's call is listed: a person decides
            calls.append(record.call)
    return tuple(reversed(calls))


def rollback_event(
    state: RunState, tools: Mapping[str, Tool], *, by: str, why: str, retry_failed: bool = False
) -> RollbackStarted | None:
    """The event that starts (or, from ``paused(rollback_incomplete)``, restarts) a rollback; ``None`` when
    there is nothing to undo."""
    if retry_failed and state.rollback:
        calls = tuple(call for call, undo in state.rollback.items() if undo.status in ("failed", "missing"))
    else:
        calls = calls_to_undo(state, tools)
    if not calls:
        return None
    return RollbackStarted(at=time.time(), by=by, why=why, calls=calls)


def due(state: RunState, policy: Collection[str]) -> str:
    """Why the agent's ``rollback_on`` policy rolls this run back now ("" when it does not)."""
    if state.rollback or state.rolling_back:
        return ""  # a run is rolled back by its policy once
    if state.status == "failed" and "failure" in policy:
        return f"rollback_on failure: the run failed({state.reason})"
    if state.status == "cancelled" and "cancel" in policy:
        return "rollback_on cancel: the run was cancelled"
    return ""


def compensation_tool(tool: Tool, result: Any) -> Tool:
    """The tool's compensation, shaped as a tool that takes the call's own arguments (and its ``result``, when
    the compensation has such a parameter), so that it runs like any call: in a thread if it is sync, under the
    tool's timeout, its failures caught and journaled."""
    undo = tool.compensation_fn
    assert undo is not None
    extra = {"result": result} if "result" in inspect.signature(undo).parameters else {}
    is_async = inspect.iscoroutinefunction(undo)

    if is_async:

        async def run_async(*args: Any, **kwargs: Any) -> Any:
            return await undo(*args, **kwargs, **extra)

        runner: Any = run_async
    else:

        def run_sync(*args: Any, **kwargs: Any) -> Any:
            return undo(*args, **kwargs, **extra)

        runner = run_sync
    return dataclasses.replace(
        tool,
        fn=runner,
        takes_ctx=takes_context(undo),
        is_async=is_async,
        inline=False,
        retry=RetryPolicy(),
    )


def check_policy(agent: str, rollback_on: Collection[str] | str | None) -> frozenset[str]:
    if rollback_on is None:
        return frozenset()
    chosen = {rollback_on} if isinstance(rollback_on, str) else set(rollback_on)
    unknown = chosen - POLICIES
    if unknown:
        raise ConfigError(
            f"agent {agent!r}: rollback_on takes 'failure' and/or 'cancel', not {', '.join(map(repr, sorted(unknown)))}"
        )
    return frozenset(chosen)
