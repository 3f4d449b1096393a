"""Supervisor and subagents: an agent that decomposes a task and hands parts of it to narrower agents.

``Agent(..., subagents=[researcher, refunder])`` makes a supervisor: it gets one delegation tool per subagent
(``delegate_to_<name>(task)``), and may hold read tools besides, never a write tool (the subagents hold the
action capability, so a confused supervisor cannot act by itself). A delegation is a *child run*: its own
journal in the supervisor's store, linked to its parent (``parent_id``), with the id ``<parent run>.<call>``, so
that the same call always means the same child. That is what makes a supervisor's crash harmless: on resume its
interrupted delegation runs again, finds its child by id and resumes it from the child's own journal (or takes
the answer of a child that had finished). A child charges its spend to the supervisor's budget as it goes (the
ledger reserves on every ancestor), and its figures travel back in the delegation's result, so the supervisor's
ledger is rebuilt with them after a resume.

What the supervisor's model reads: the child's answer, or, when the child failed, a sentence that says so and
what to do. A child that pauses for a person (an approval, an interrupted write) pauses the supervisor too
(``paused(waiting_for_subagent)``); once the child is decided, resuming the supervisor resumes the child.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentkeel.core.budget import Spend
from agentkeel.core.events import ToolFailure
from agentkeel.core.state import RunState, replay
from agentkeel.errors import ConfigError, RunNotFound
from agentkeel.observe.ids import delegation_traceparent
from agentkeel.result import RunResult
from agentkeel.tools.tool import Tool, tool

if TYPE_CHECKING:
    from agentkeel.agent import Agent
    from agentkeel.ledger import Ledger
    from agentkeel.stores.base import Store

SPEND_KEY = "subagent_spend"
"""Where a delegation's result carries its child's figures (for the supervisor's ledger after a resume)."""


def delegation_tool(agent: Agent) -> Tool:
    """The tool a supervisor calls to hand a task to ``agent``."""
    name = "delegate_to_" + re.sub(r"[^A-Za-z0-9_-]", "_", agent.name)[:50]
    about = f" ({agent.description})" if agent.description else ""

    async def delegate(task: str) -> str:
        raise AssertionError("a delegation is run by the engine, not called")

    delegate.__doc__ = (
        f"Hand a task to the {agent.name} subagent{about}. It works on its own, with its own tools, and returns "
        "its answer. Give it one self-contained task with every detail it needs: it does not see this "
        "conversation.\n\nArgs:\n    task: The task, complete in itself."
    )
    built = tool(name=name, effect="read", idempotent=True)(delegate)
    built.subagent = agent
    return built


def check_supervisor(name: str, tools: dict[str, Tool], subagents: list[Agent]) -> list[Tool]:
    """A supervisor's own tools must be read tools; returns its delegation tools."""
    for item in tools.values():
        if item.effect == "write":
            raise ConfigError(
                f"agent {name!r} has subagents, so it is a supervisor, and a supervisor holds read tools only: "
                f"{item.name!r} is a write tool; give it to a subagent and let the supervisor delegate to it"
            )
    delegations = [delegation_tool(agent) for agent in subagents]
    for delegation in delegations:
        if delegation.name in tools:
            raise ConfigError(f"agent {name!r}: a tool is already named {delegation.name!r}; rename it")
    if len({d.name for d in delegations}) != len(delegations):
        raise ConfigError(f"agent {name!r}: two subagents have the same name; subagent names must be unique")
    return delegations


@dataclass(frozen=True, slots=True)
class Delegated:
    """What a delegation came to: the supervisor's tool result, or ``paused`` (the child waits for a person)."""

    child_id: str
    paused: bool = False
    content: str = ""
    result: Any = None
    failure: ToolFailure | None = None


async def delegate(
    agent: Agent,
    store: Store,
    *,
    parent: RunState,
    call: str,
    task: str,
    ledger: Ledger | None,
    deps: Any,
) -> Delegated:
    """Run (or resume, or read the end of) the child run of delegation ``call``."""
    child_id = f"{parent.run_id}.{call}"
    child = agent.replace(store=store)
    try:
        found: RunState | None = replay(await store.load(child_id))
    except RunNotFound:
        found = None
    if found is not None and ledger is not None:
        # The supervisor's ledger was rebuilt from its journal, which holds only its finished delegations: what
        # this child spent before the restart counts against the supervisor's budget too.
        ledger.absorb(Spend.of(found).plus(children_spend(found)))
    if found is None:
        nest = delegation_traceparent(parent.run_id, parent.trace_parent, call)
        result = await child.start_child(
            task, run_id=child_id, parent_id=parent.run_id, ledger=ledger, deps=deps, trace_parent=nest
        )
    elif found.terminal:
        result = RunResult.of(found)
    else:
        result = await child.resume_child(child_id, ledger=ledger, deps=deps)
    return outcome(agent.name, result)


def outcome(name: str, result: RunResult) -> Delegated:
    spend = {
        "model_calls": result.model_calls,
        "tool_calls": result.tool_calls,
        "input_tokens": result.usage.input_tokens,
        "output_tokens": result.usage.output_tokens,
        "cost_usd": result.cost_usd,
    }
    value = {"run_id": result.run_id, "status": result.status, "output": result.output, SPEND_KEY: spend}
    if result.status == "paused":
        return Delegated(child_id=result.run_id, paused=True)
    if result.status == "completed":
        return Delegated(child_id=result.run_id, content=result.output or "(no answer)", result=value)
    shown = f"{result.status}({result.reason})" if result.reason else result.status
    said = f" What it said last: {result.output}" if result.output else ""
    message = (
        f"The {name} subagent could not finish: {shown}. {result.detail}.{said} Decide whether to try again with "
        "a narrower task, ask another subagent, or answer with what you have."
    )
    return Delegated(
        child_id=result.run_id, content=message, result=value, failure=ToolFailure(kind="tool_error", message=message)
    )


def children_spend(state: RunState) -> Spend:
    """What the run's finished delegations spent, from their results (a supervisor's ledger after a resume)."""
    total = Spend()
    for record in state.calls.values():
        finished = record.finished
        value = finished.result if finished is not None else None
        if isinstance(value, dict) and isinstance(value.get(SPEND_KEY), dict):
            figures = value[SPEND_KEY]
            total = total.plus(
                Spend(
                    model_calls=int(figures.get("model_calls", 0)),
                    tool_calls=int(figures.get("tool_calls", 0)),
                    input_tokens=int(figures.get("input_tokens", 0)),
                    output_tokens=int(figures.get("output_tokens", 0)),
                    cost_usd=float(figures.get("cost_usd", 0.0)),
                )
            )
    return total


async def children_waiting(store: Store, state: RunState) -> bool:
    """Whether a child the supervisor paused for still waits for a person."""
    for call in state.waiting_on:
        try:
            child = replay(await store.load(f"{state.run_id}.{call}"))
        except RunNotFound:
            continue
        if child.status == "paused" and child.waiting:  # not yet decided (a decided child resumes with its parent)
            return True
    return False


def waiting_detail(state: RunState, calls: tuple[str, ...]) -> str:
    children = ", ".join(f"{state.run_id}.{call}" for call in calls)
    return (
        f"subagent run(s) {children} wait for a person: `keel approvals` lists held calls, `keel show RUN` tells "
        f"why a run paused; once they are decided, `keel resume {state.run_id}` resumes them through this run"
    )
