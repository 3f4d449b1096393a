"""``keel plan`` and ``keel apply``: a dry run's plan, read, then approved as a whole and carried out."""

from __future__ import annotations

from typing import Annotated

import typer

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
from agentkeel.cli.lookup import find_run
from agentkeel.cli.render import Output, print_plan
from agentkeel.core.state import replay


@app.command()
def plan(run_id: RunArgument, store: StoreOption = None, as_json: JsonOption = False) -> None:
    """Show a dry run's plan: the write calls it would make, in order, each with its tool's preview."""
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
        state = replay(events)
        if state.mode != "dry_run":
            raise UsageProblem(f"run {found} is not a dry run: start one with `keel run --dry-run FILE.py:AGENT TASK`")
        if as_json:
            out.json(
                [
                    {
                        "call": p.call,
                        "tool": p.name,
                        "arguments": p.arguments,
                        "preview": p.preview,
                        "has_preview": p.has_preview,
                    }
                    for p in state.plan
                ]
            )
        else:
            print_plan(out, found, state.plan)
        return exits.OK

    _execute(out, work)


@app.command()
def apply(
    run_id: RunArgument,
    by: Annotated[str | None, typer.Option("--by", help="Who approves the plan (default: your user name).")] = None,
    agent: AgentOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a dry run's plan as a whole and carry it out: a new run that may make exactly the planned write
    calls, in order, with their arguments; any other write call is refused."""
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            state = replay(events)
            loaded = _agent_for(state, agent, model)
            result = await loaded.replace(store=opened).apply(found, by=by or _operator())
            out.note(f"applying the plan of {found}: run {result.run_id}")
            return await _show_outcome(out, opened, result, state.agent)

    _execute(out, work)
