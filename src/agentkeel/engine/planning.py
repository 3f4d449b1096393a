"""From a model's response to the events of its step: which calls run, which are refused, which wait for a person.

Everything here is decided before anything runs, and journaled in one commit with the response: a call that
validates and passes the gates is journaled as started (its intent), a call refused (unknown tool, invalid
arguments, a ``deny`` gate) as finished with an error the model can act on, a gated call as
``ApprovalRequested``. Only started calls are handed back to run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from agentkeel.core.events import (
    ApprovalRequested,
    CallPreviewed,
    Event,
    PlannedCall,
    RunEnded,
    ToolCallFinished,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.messages import ModelResponse, ToolCall
from agentkeel.core.state import RunState
from agentkeel.engine.tool_runner import result_text
from agentkeel.gates import Rule, gate
from agentkeel.tools.schema import takes_context
from agentkeel.tools.tool import ToolContext
from agentkeel.tools.validate import MAX_DEPTH, ValidCall, nested_deeper_than


@dataclass(frozen=True, slots=True)
class Runnable:
    """A started call, ready to run."""

    call: str
    tool_call_id: str
    valid: ValidCall
    key: str


@dataclass(frozen=True, slots=True)
class Preview:
    """A dry run's stand-in for a write call: what its tool's preview said (or that it has none)."""

    content: str
    """What the model reads."""
    value: Any = None
    has_preview: bool = False


OFF_PLAN_MESSAGE = (
    "{tool} was not run: this run applies an approved plan, and {expected}. Only the planned write calls may run, "
    "in their order, with their arguments; make that call, or answer if the plan is done."
)

DENIED_MESSAGE = (
    "{tool} was not run: it is not allowed here ({why}). Do not call it again for this; tell the user what you "
    "cannot do, or find another way that is allowed."
)


def plan_calls(
    run_id: str,
    step: int,
    calls: Sequence[ToolCall],
    checks: Sequence[ValidCall | ToolFailure],
    gates: Sequence[Rule],
    events: list[Event],
    now: float,
    afford: Callable[[str], ToolFailure | None] | None = None,
    *,
    previews: Mapping[int, Preview] | None = None,
    plan: Sequence[PlannedCall] = (),
    plan_done: int = 0,
) -> list[Runnable]:
    """Append each call's event to ``events``; return the calls to run now, in the model's order.

    ``afford(tool)``: the budget's check before a call starts; the refusal when it may not.
    ``previews`` (a dry run): the stand-ins of the write calls, by index, journaled instead of running them.
    ``plan`` (an ``apply`` run): the approved write calls, of which ``plan_done`` have started; a write call that
    is not the next one is refused."""
    runnable: list[Runnable] = []
    applying = bool(plan)
    for index, call in enumerate(calls):
        checked = checks[index]
        call_id = f"{step}.{index + 1}"
        if isinstance(checked, ToolFailure):
            events.append(_refused(call_id, call, checked, now))
            continue
        key = f"{run_id}:{call_id}"
        gated = gate(gates, checked.tool, checked.json_arguments) if gates else None
        if gated is not None and gated.action == "deny":
            message = DENIED_MESSAGE.format(tool=call.name, why=gated.why)
            events.append(_refused(call_id, call, ToolFailure(kind="denied", message=message), now))
            continue
        writes = checked.tool.effect == "write"
        if previews is not None and writes:  # a dry run: the preview stands in for the call
            shown = previews[index]
            events.append(
                CallPreviewed(
                    at=now,
                    call=call_id,
                    tool_call_id=call.id,
                    name=call.name,
                    arguments=checked.json_arguments,
                    content=shown.content,
                    preview=shown.value,
                    has_preview=shown.has_preview,
                )
            )
            continue
        if applying and writes:  # an approved plan: the next planned call, or nothing
            expected = plan[plan_done] if plan_done < len(plan) else None
            if expected is None or expected.name != call.name or expected.arguments != checked.json_arguments:
                message = OFF_PLAN_MESSAGE.format(tool=call.name, expected=_expected(expected))
                events.append(_refused(call_id, call, ToolFailure(kind="off_plan", message=message), now))
                continue
            plan_done += 1
            gated = None  # the person who approved the plan approved this call
        if gated is not None:
            events.append(
                ApprovalRequested(
                    at=now,
                    call=call_id,
                    tool_call_id=call.id,
                    name=call.name,
                    arguments=checked.json_arguments,
                    idempotency_key=key,
                    why=gated.why,
                )
            )
            continue
        refusal = afford(call.name) if afford is not None else None
        if refusal is not None:
            events.append(_refused(call_id, call, refusal, now))
            continue
        events.append(
            ToolCallStarted(
                at=now,
                call=call_id,
                tool_call_id=call.id,
                name=call.name,
                arguments=checked.json_arguments,
                idempotency_key=key,
            )
        )
        runnable.append(Runnable(call_id, call.id, checked, key))
    return runnable


def answer_ending(state: RunState, output: str, now: float) -> RunEnded:
    """The end of a run whose model answered: completed, unless it applies a plan it did not carry out in full."""
    left = state.plan[state.plan_done :] if state.mode == "apply" else []
    if not left:
        return RunEnded(at=now, status="completed", output=output)
    listed = ", ".join(_shown(planned) for planned in left)
    error = f"the agent answered before making the planned call(s) {listed}"
    return RunEnded(at=now, status="failed", reason="plan_incomplete", output=output, error=error)


def _expected(planned: PlannedCall | None) -> str:
    if planned is None:
        return "every planned call has run"
    return f"the next planned call is {_shown(planned)}"


def _shown(planned: PlannedCall) -> str:
    return f"{planned.name}({json.dumps(planned.arguments, ensure_ascii=False)})"


def _refused(call_id: str, call: ToolCall, failure: ToolFailure, now: float) -> ToolCallFinished:
    return ToolCallFinished(
        at=now,
        call=call_id,
        tool_call_id=call.id,
        name=call.name,
        content=failure.message,
        error=failure,
        attempts=0,
    )


def journalable(response: ModelResponse) -> ModelResponse:
    """Arguments nested past what the journal can read back are kept as JSON text (validation then refuses
    them with a message the model can act on), so that a model's output can never make a journal unreadable."""
    calls = tuple(_shallow(call) for call in response.tool_calls)
    if all(new is old for new, old in zip(calls, response.tool_calls, strict=True)):
        return response
    return dataclasses.replace(response, tool_calls=calls)


def _shallow(call: ToolCall) -> ToolCall:
    if not (isinstance(call.arguments, dict) and nested_deeper_than(call.arguments)):
        return call
    try:
        arguments = json.dumps(call.arguments)
    except (ValueError, RecursionError):
        arguments = f"(arguments nested more than {MAX_DEPTH} levels deep)"
    return ToolCall(id=call.id, name=call.name, arguments=arguments)


async def preview_calls(
    checks: Sequence[ValidCall | ToolFailure], context: Callable[[int], ToolContext]
) -> dict[int, Preview]:
    """A dry run's stand-ins for the write calls among ``checks`` (by index): each tool's preview, run now (in a
    thread if it is sync: it may read a database), or a note that the tool has none. ``context(index)``: the
    ``ToolContext`` of the call at that index."""
    previews: dict[int, Preview] = {}
    for index, checked in enumerate(checks):
        if isinstance(checked, ToolFailure) or checked.tool.effect != "write":
            continue
        tool = checked.tool
        show = tool.preview_fn
        if show is None:
            content = f"[dry run] {tool.name} was not run, and it has no preview: continue as if it had succeeded."
            previews[index] = Preview(content=content)
            continue
        args = (context(index),) if takes_context(show) else ()
        try:
            if inspect.iscoroutinefunction(show):
                value = await show(*args, **checked.kwargs)
            elif tool.inline:
                value = show(*args, **checked.kwargs)
            else:
                value = await asyncio.to_thread(show, *args, **checked.kwargs)
            shown = to_jsonable_python(value, fallback=str)
        except Exception as exc:
            content = f"[dry run] {tool.name} was not run, and its preview failed ({type(exc).__name__}: {exc})."
            previews[index] = Preview(content=content)
            continue
        content = f"[dry run] {tool.name} was not run. Its preview: {result_text(shown)}. Continue as if it had."
        previews[index] = Preview(content=content, value=shown, has_preview=True)
    return previews
