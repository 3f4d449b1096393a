"""``keel rollback``: undo a run's effects with the compensations its write tools declare."""

from __future__ import annotations

from typing import Annotated

import typer

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
from agentkeel.cli.lookup import find_run
from agentkeel.cli.render import Output
from agentkeel.core.state import replay


@app.command()
def rollback(
    run_id: RunArgument,
    reason: Annotated[str, typer.Option("--reason", help="Why, for the journal.")] = "rolled back with keel rollback",
    agent: AgentOption = None,
    model: ModelOption = None,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Undo a run's write calls, the last first, with their tools' compensations; each runs once, journaled.

    The run ends rolled_back, or paused(rollback_incomplete) listing the calls that have no compensation or whose
    compensation failed (settle them with `keel resolve`, or run `keel rollback` again to retry the failed ones).
    """
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            found, events = await find_run(opened, run_id)
            state = replay(events)
            loaded = _agent_for(state, agent, model)  # the compensations live in the agent's tools
            result = await loaded.replace(store=opened).rollback(found, by=_operator(), reason=reason)
            return await _show_outcome(out, opened, result, state.agent)

    _execute(out, work)
