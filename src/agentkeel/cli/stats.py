"""``keel stats``: the success rate and the cost per task of the runs in a window, from the store.

The figures are ``observe/stats.py``'s; this module reads the window from the command line, asks the store for
the runs and their tool call outcomes (counted in the store, so no journal is loaded here), and prints them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import typer
from rich.text import Text

from agentkeel.cli import exits
from agentkeel.cli.app import JsonOption, StoreOption, _execute, _opened, app
from agentkeel.cli.render import Output, cost, plural, status_text, tokens
from agentkeel.cli.since import is_duration, parse_since
from agentkeel.observe.stats import Spread, TaskStats, task_stats

DEFAULT_SINCE = "24h"
SHOWN_TOOLS = 10
"""The text lists this many of the most failing tools; ``--json`` lists every tool."""


@app.command("stats")
def stats(
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only the tasks of the agent with this name (the root run's agent).")
    ] = None,
    since: Annotated[
        str,
        typer.Option(
            "--since",
            help="The window: the tasks started since then. A duration back from now (30m, 24h, 7d, 2w) or an ISO "
            "date or time (2025-06-01, 2025-06-01T09:30; local time without a zone).",
        ),
    ] = DEFAULT_SINCE,
    store: StoreOption = None,
    as_json: JsonOption = False,
) -> None:
    """Task success rate, cost per task (mean, p50, p95), tokens, steps, failures by reason and the most failing
    tools, for the tasks started in a window (default: the last 24 hours). A task is a run that no other run
    started; its subagents' runs count in its figures. Running and paused tasks are not in the success rate."""
    out = Output(as_json=as_json)

    async def work() -> int:
        start = parse_since(since, time.time())
        async with _opened(store) as opened:
            rows = await opened.list_runs(since=start, limit=None)
            outcomes = await opened.tool_outcomes(since=start)
        figures = task_stats(rows, outcomes, since=start, agent=agent)
        if as_json:
            out.json(figures.to_json())
        else:
            print_stats(out, figures, window=since)
        return exits.OK

    _execute(out, work)


# -- the text ---------------------------------------------------------------------------------------------------

_LABEL = 17
"""The width of the labels' column: the longest label, ``tokens per task``, and two spaces."""


def print_stats(out: Output, figures: TaskStats, *, window: str) -> None:
    """The figures as lines of text: a heading that names the window, one figure a line, then the tools."""
    where = _window(figures, window)
    if figures.tasks == 0:
        out.print(f"no tasks {where}: nothing to count (a wider window: --since 7d)")
        return
    out.print(Text(f"{plural(figures.tasks, 'task')} {where}", style="bold"))
    parts = [f"{figures.completed} completed", f"{figures.unsuccessful} not successful"]
    if figures.open:
        states = ", ".join(f"{count} {status}" for status, count in figures.open_by_status.items())
        parts.append(f"{figures.open} open ({states}): not counted in the success rate")
    _line(out, "tasks", ", ".join(parts))
    rate = figures.success_rate
    if rate is None:
        _line(out, "success rate", "none yet: no task has ended")
    else:
        _line(out, "success rate", f"{rate:.1%} ({figures.completed} of {plural(figures.ended, 'ended task')})")
    if figures.failures:
        _line(
            out,
            "failures",
            " · ".join(f"{status_text(f.status, f.reason).plain} {f.tasks}" for f in figures.failures),
        )
    if figures.cost_usd is not None:
        _line(out, "cost per task", _spread(figures.cost_usd, cost) + f" · all tasks {cost(figures.cost_usd_total)}")
    if figures.input_tokens is not None and figures.output_tokens is not None:
        _line(
            out,
            "tokens per task",
            f"input {_spread(figures.input_tokens, _count)} · output {_spread(figures.output_tokens, _count)}",
        )
    if figures.steps is not None:
        _line(out, "steps per task", _spread(figures.steps, _count))
    if figures.ended:
        out.print(
            Text(
                f"per ended task, subagent runs included: {plural(figures.runs, 'run')} in these "
                f"{plural(figures.tasks, 'task')}",
                style="dim",
            )
        )
    _print_tools(out, figures)


def _print_tools(out: Output, figures: TaskStats) -> None:
    failing = [tool for tool in figures.tools if tool.failures][:SHOWN_TOOLS]
    if not figures.tools:
        out.print("no tool calls")
        return
    if not failing:
        calls = sum(tool.calls for tool in figures.tools)
        out.print(f"no tool call failed ({plural(calls, 'call')} in all)")
        return
    out.print(Text("most failing tools (the calls of every task in the window, open ones included)", style="bold"))
    header = ("TOOL", "FAILURES", "CALLS", "RATE")
    cells = [(t.tool, str(t.failures), str(t.calls), f"{t.failure_rate:.1%}") for t in failing]
    widths = [max(len(name), *(len(row[i]) for row in cells)) for i, name in enumerate(header)]
    for values in (header, *cells):
        line = "  ".join(
            value.ljust(width) if i == 0 else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        )
        out.print(Text(f"  {line.rstrip()}"))


def _line(out: Output, label: str, value: str) -> None:
    out.print(Text.assemble((label.ljust(_LABEL), "bold"), value))


def _spread(spread: Spread, shown: Callable[[float], str]) -> str:
    return f"mean {shown(spread.mean)} · p50 {shown(spread.p50)} · p95 {shown(spread.p95)}"


def _count(value: float) -> str:
    """A count, or a mean of counts: whole numbers plain, a fraction to one place."""
    return tokens(int(value)) if float(value).is_integer() else f"{value:,.1f}"


def _window(figures: TaskStats, window: str) -> str:
    """Which tasks these are, in the reader's local time; a duration is repeated as typed, since "the last 24h"
    reads faster than a date."""
    assert figures.since is not None
    started = datetime.fromtimestamp(figures.since).strftime("%Y-%m-%d %H:%M")
    span = f" (the last {window.strip()})" if is_duration(window) else ""
    who = f"of agent {figures.agent} " if figures.agent is not None else ""
    return f"{who}started since {started}{span}"
