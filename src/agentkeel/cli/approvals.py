"""``keel approvals``, ``keel approve`` and ``keel reject``: a person decides the calls that gates hold."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from agentkeel.agent import Agent
from agentkeel.cli import exits
from agentkeel.cli.app import (
    AgentOption,
    JsonOption,
    ModelOption,
    RunArgument,
    StoreOption,
    _agent_for,
    _execute,
    _opened,
    _operator,
    _show_outcome,
    app,
)
from agentkeel.cli.exits import UsageProblem
from agentkeel.cli.lookup import SCAN_LIMIT, find_run
from agentkeel.cli.render import Output, age
from agentkeel.core.state import RunState, replay
from agentkeel.engine.operator import approve_call, reject_call
from agentkeel.stores.base import Store
from agentkeel.tools.validate import validated_arguments

CallArgument = Annotated[str, typer.Argument(help="The held call, e.g. 2.1 (keel approvals lists them).")]
NoResume = Annotated[bool, typer.Option("--no-resume", help="Record the decision; do not resume the run.")]


@app.command()
def approvals(
    agent: Annotated[str | None, typer.Option("--agent", help="Only the runs of the agent with this name.")] = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """List the calls waiting for approval across runs: run, call, tool, arguments, why it was held, age."""
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            pending = await pending_approvals(opened, agent=agent)
        if as_json:
            out.json(pending)
            return exits.OK
        if not pending:
            out.print("no calls are waiting for approval")
            return exits.OK
        now = time.time()
        for item in pending:
            parent = f" (child of {item['parent_id']})" if item["parent_id"] else ""
            out.print(
                f"{item['run_id']}{parent} {item['agent']}  call {item['call']}: {item['tool']} "
                f"{json.dumps(item['arguments'], ensure_ascii=False)}  · {item['why']} · {age(now - item['at'])}"
            )
        out.print("decide with `keel approve RUN CALL [--args JSON]` or `keel reject RUN CALL --reason TEXT`")
        return exits.OK

    _execute(out, work)


async def pending_approvals(store: Store, *, agent: str | None = None) -> list[dict[str, Any]]:
    """Every call a gate holds, across the store's paused runs, oldest first."""
    pending: list[dict[str, Any]] = []
    for row in await store.list_runs(limit=SCAN_LIMIT, status="paused", agent=agent):
        if row.reason != "awaiting_approval":
            continue
        state = replay(await store.load(row.run_id))
        for call in state.awaiting:
            requested = state.approvals[call].requested
            pending.append(
                {
                    "run_id": state.run_id,
                    "parent_id": state.parent_id,
                    "agent": state.agent,
                    "call": call,
                    "tool": requested.name,
                    "arguments": requested.arguments,
                    "why": requested.why,
                    "at": requested.at,
                }
            )
    return sorted(pending, key=lambda item: item["at"])


@app.command()
def approve(
    run_id: RunArgument,
    call: CallArgument,
    args: Annotated[
        str | None,
        typer.Option("--args", help="Run it with these arguments instead (JSON, checked against the tool's schema)."),
    ] = None,
    no_resume: NoResume = False,
    agent: AgentOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a held call (optionally with edited arguments); once no call waits, the run resumes."""
    out = Output(as_json=as_json)

    async def work() -> int:
        edited = _json_args(args)
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            before = replay(events)
            _check_waiting(before, call)
            needs_agent = edited is not None or (not no_resume and before.awaiting == (call,))
            driving = await _driving(opened, before, agent, model) if needs_agent else None  # fail before recording
            if edited is not None:
                assert driving is not None
                owner = _find_agent(driving[1], before.agent)
                tool = owner.tools.get(before.approvals[call].name) if owner is not None else None
                if tool is None:
                    raise UsageProblem(f"the agent has no tool {before.approvals[call].name!r} to check --args against")
                edited = validated_arguments(tool, edited)
            by = _operator()
            await approve_call(opened, found, call, by=by, arguments=edited)
            changed = " with the edited arguments" if edited is not None else ""
            out.note(f"recorded: call {call} ({before.approvals[call].name}) approved{changed}, by {by}")
            return await _continue(out, opened, found, driving, no_resume)

    _execute(out, work)


@app.command()
def reject(
    run_id: RunArgument,
    call: CallArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why: the agent reads it.", show_default=False)] = "",
    no_resume: NoResume = False,
    agent: AgentOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Reject a held call: it never runs, and the agent is told why; once no call waits, the run resumes."""
    out = Output(as_json=as_json)

    async def work() -> int:
        if not reason.strip():
            raise UsageProblem("say why with --reason TEXT: the agent reads it")
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            before = replay(events)
            _check_waiting(before, call)
            will_resume = not no_resume and before.awaiting == (call,)
            driving = await _driving(opened, before, agent, model) if will_resume else None
            by = _operator()
            await reject_call(opened, found, call, by=by, reason=reason)
            out.note(f"recorded: call {call} ({before.approvals[call].name}) rejected, by {by}: {reason}")
            return await _continue(out, opened, found, driving, no_resume)

    _execute(out, work)


async def _driving(store: Store, state: RunState, override: str | None, model: str | None) -> tuple[RunState, Agent]:
    """The run at the root of ``state``'s tree (itself, unless it is a subagent's run) and the agent that drives
    it: a subagent's run goes on when its supervisor resumes it."""
    root = state
    while root.parent_id is not None:
        root = replay(await store.load(root.parent_id))
    return root, _agent_for(root, override, model)


def _find_agent(agent: Agent, name: str) -> Agent | None:
    if agent.name == name:
        return agent
    for sub in agent.subagents:
        found = _find_agent(sub, name)
        if found is not None:
            return found
    return None


async def _continue(
    out: Output, store: Store, run_id: str, driving: tuple[RunState, Agent] | None, no_resume: bool
) -> int:
    state = replay(await store.load(run_id))
    if state.awaiting:
        out.note(f"run {run_id} still waits for decisions about: {', '.join(state.awaiting)}")
        return exits.OK
    root_id = driving[0].run_id if driving is not None else run_id
    if no_resume or driving is None:
        out.note(f"the run stays paused: continue it with `keel resume {root_id}`")
        return exits.OK
    root, agent = driving
    if root.run_id != run_id:
        out.note(f"resuming {root.run_id}, the supervisor that delegated to this run")
    result = await agent.replace(store=store).resume(root.run_id)
    return await _show_outcome(out, store, result, root.agent)


def _check_waiting(state: RunState, call: str) -> None:
    if call not in state.awaiting:
        waiting = ", ".join(state.awaiting) or "none"
        raise UsageProblem(
            f"run {state.run_id}: call {call!r} is not waiting for approval (calls waiting: {waiting}); "
            "`keel approvals` lists the held calls"
        )


def _json_args(args: str | None) -> Any:
    if args is None:
        return None
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        raise UsageProblem(
            f"--args is not valid JSON ({exc.msg} at character {exc.pos + 1}): quote it for the shell, e.g. "
            '--args \'{"order_id": "#1", "amount": 100}\''
        ) from exc
    if not isinstance(value, dict):
        raise UsageProblem("--args must be a JSON object of the tool's arguments, e.g. --args '{\"amount\": 100}'")
    return value
