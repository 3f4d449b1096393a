"""From a model's response to the events of its step: which calls run, which are refused, which wait for a person.

Everything here is decided before anything runs, and journaled in one commit with the response: a call that
validates and passes the gates is journaled as started (its intent), a call refused (unknown tool, invalid
arguments, a ``deny`` gate) as finished with an error the model can act on, a gated call as
``ApprovalRequested``. Only started calls are handed back to run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from agentkeel.core.events import ApprovalRequested, Event, ToolCallFinished, ToolCallStarted, ToolFailure
from agentkeel.core.messages import ModelResponse, ToolCall
from agentkeel.gates import Rule, gate
from agentkeel.tools.validate import MAX_DEPTH, ValidCall, nested_deeper_than


@dataclass(frozen=True, slots=True)
class Runnable:
    """A started call, ready to run."""

    call: str
    tool_call_id: str
    valid: ValidCall
    key: str


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
    afford: Callable[[str], str | None] | None = None,
) -> list[Runnable]:
    """Append each call's event to ``events``; return the calls to run now, in the model's order.

    ``afford(tool)``: the budget's check before a call starts; a message for the model when it may not."""
    runnable: list[Runnable] = []
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
            events.append(_refused(call_id, call, ToolFailure(kind="over_budget", message=refusal), now))
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
