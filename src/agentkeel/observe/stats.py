"""Figures over a window of tasks: how many succeeded, what one costs, which tools fail (``keel stats``).

A *task* is a root run (no ``parent_id``): what someone asked for. Its subagents' runs, nested at any depth (a
pipeline is a run too), are part of it: their cost, tokens and steps add into the task's, and their tool calls
count with the task's. Each run's row holds only its own model calls (a supervisor's row does not include its
children's spend), so summing a task's runs counts every call once.

Outcomes. ``completed`` is a success; ``failed``, ``cancelled`` and ``rolled_back`` are not; anything else
(``running``, ``paused``, ``rolling_back``) is *open*: not yet an outcome, so open tasks stay out of the success
rate and out of the per-task figures (a task half done would pull the cost per task down). Tool calls are counted
for every task in the window, open ones included: a paused task is often paused because a call failed.

Everything here is a pure function of the rows and tool outcomes a store lists, so the figures can be checked
against numbers worked out by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentkeel.stores.base import RunRow, ToolCounts

SUCCESS = "completed"
UNSUCCESSFUL: frozenset[str] = frozenset({"failed", "cancelled", "rolled_back"})
"""Ended without success. Any other status than these and ``completed`` is open."""


def percentile(values: Sequence[float], percent: int) -> float:
    """The nearest-rank percentile: the smallest value that at least ``percent``% of the values are less than or
    equal to, i.e. the value at rank ``ceil(percent / 100 * n)`` (1-based) of the sorted values. Always one of
    the values (no interpolation), so a p95 of task costs is the cost of a task that happened."""
    if not values:
        raise ValueError("the percentile of no values")
    if not 0 < percent <= 100:
        raise ValueError(f"a percentile is above 0 and at most 100, not {percent}")
    ordered = sorted(values)
    rank = -(-percent * len(ordered) // 100)  # ceil in integers: 0.95 * 20 must be 19, not 19.000000000000004
    return ordered[rank - 1]


@dataclass(frozen=True, kw_only=True, slots=True)
class Spread:
    """The mean, median and 95th percentile (nearest rank, see ``percentile``) of a figure across tasks."""

    mean: float
    p50: float
    p95: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        """None for no values: a figure over no task is not zero, it does not exist."""
        if not values:
            return None
        return cls(mean=math.fsum(values) / len(values), p50=percentile(values, 50), p95=percentile(values, 95))

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "p50": self.p50, "p95": self.p95}


@dataclass(frozen=True, kw_only=True, slots=True)
class FailureCount:
    """How many tasks ended unsuccessfully in this status, for this reason."""

    status: str
    reason: str
    tasks: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ToolStats:
    """A tool's calls across the window's tasks, and how many of them failed."""

    tool: str
    calls: int
    failures: int

    @property
    def failure_rate(self) -> float:
        return self.failures / self.calls if self.calls else 0.0


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskStats:
    """The figures of the tasks in a window. ``to_json`` gives them the names ``keel stats --json`` prints."""

    since: float | None
    """The window's start (seconds since the epoch): tasks whose root run was created then or later."""
    agent: str | None
    """Only the tasks of this agent (the root run's agent), when given."""
    tasks: int
    runs: int
    """The runs of those tasks, subagent runs included."""
    completed: int
    unsuccessful: int
    open_by_status: dict[str, int] = field(default_factory=dict)
    failures: tuple[FailureCount, ...] = ()
    """Unsuccessful tasks by status and reason, the most frequent first."""
    cost_usd: Spread | None = None
    """Per ended task (None: no task ended)."""
    cost_usd_total: float = 0.0
    """What every task in the window cost, open ones included."""
    input_tokens: Spread | None = None
    output_tokens: Spread | None = None
    steps: Spread | None = None
    tools: tuple[ToolStats, ...] = ()
    """Every tool called in the window's tasks, the most failures first (then the highest failure rate)."""

    @property
    def ended(self) -> int:
        return self.completed + self.unsuccessful

    @property
    def open(self) -> int:
        return sum(self.open_by_status.values())

    @property
    def success_rate(self) -> float | None:
        """Completed tasks over ended ones; None when none ended (no rate, rather than a rate of 0)."""
        return self.completed / self.ended if self.ended else None

    def to_json(self) -> dict[str, Any]:
        """The figures as one JSON object; ``docs/cli.md`` (``keel stats``) documents each field."""
        return {
            "since": self.since,
            "since_utc": None if self.since is None else datetime.fromtimestamp(self.since, UTC).isoformat(),
            "agent": self.agent,
            "tasks": self.tasks,
            "runs": self.runs,
            "ended": self.ended,
            "completed": self.completed,
            "unsuccessful": self.unsuccessful,
            "open": self.open,
            "open_by_status": dict(self.open_by_status),
            "success_rate": self.success_rate,
            "failures": [{"status": f.status, "reason": f.reason, "tasks": f.tasks} for f in self.failures],
            "cost_usd": _spread_json(self.cost_usd),
            "cost_usd_total": self.cost_usd_total,
            "input_tokens": _spread_json(self.input_tokens),
            "output_tokens": _spread_json(self.output_tokens),
            "steps": _spread_json(self.steps),
            "tools": [
                {"tool": t.tool, "calls": t.calls, "failures": t.failures, "failure_rate": t.failure_rate}
                for t in self.tools
            ],
        }


def _spread_json(spread: Spread | None) -> dict[str, float] | None:
    return None if spread is None else spread.to_json()


def task_stats(
    rows: Iterable[RunRow],
    outcomes: Iterable[ToolCounts] = (),
    *,
    since: float | None = None,
    agent: str | None = None,
) -> TaskStats:
    """The figures of the tasks among ``rows`` whose root run was created at or after ``since`` and (given
    ``agent``) is a run of that agent; ``outcomes`` are the tool calls of any of the rows' runs.

    ``rows`` must hold the tasks' subagent runs as well: a store's ``list_runs(since=..., limit=None)`` does, since
    a child run starts after its parent. A run whose chain of parents leaves ``rows`` (a child of a task that
    started before the window) belongs to no task here and is left out, as are outcomes of runs not in ``rows``.
    """
    by_id = {row.run_id: row for row in rows}
    roots: dict[str, str | None] = {}  # run id -> its task's root run id (None: no task in the window)

    def root_of(run_id: str) -> str | None:
        chain: list[str] = []
        current: str | None = run_id
        found: str | None = None
        while current is not None:
            if current in roots:
                found = roots[current]
                break
            row = by_id.get(current)
            if row is None or current in chain:  # outside the listing (or, never written, a loop): no task
                break
            chain.append(current)
            if row.parent_id is None:
                found = current
                break
            current = row.parent_id
        for member in chain:
            roots[member] = found
        return found

    tasks = {
        run_id: row
        for run_id, row in by_id.items()
        if row.parent_id is None
        and (since is None or row.created_at >= since)
        and (agent is None or row.agent == agent)
    }
    cost: dict[str, list[float]] = {run_id: [] for run_id in tasks}
    input_tokens = dict.fromkeys(tasks, 0)
    output_tokens = dict.fromkeys(tasks, 0)
    steps = dict.fromkeys(tasks, 0)
    runs = 0
    for run_id, row in by_id.items():
        root = root_of(run_id)
        if root not in tasks:
            continue
        runs += 1
        cost[root].append(row.cost_usd)
        input_tokens[root] += row.input_tokens
        output_tokens[root] += row.output_tokens
        steps[root] += row.steps

    completed = unsuccessful = 0
    open_by_status: dict[str, int] = {}
    failures: dict[tuple[str, str], int] = {}
    ended: list[str] = []
    for run_id, row in tasks.items():
        if row.status == SUCCESS:
            completed += 1
            ended.append(run_id)
        elif row.status in UNSUCCESSFUL:
            unsuccessful += 1
            ended.append(run_id)
            failures[row.status, row.reason] = failures.get((row.status, row.reason), 0) + 1
        else:
            open_by_status[row.status] = open_by_status.get(row.status, 0) + 1

    task_cost = {run_id: math.fsum(costs) for run_id, costs in cost.items()}
    return TaskStats(
        since=since,
        agent=agent,
        tasks=len(tasks),
        runs=runs,
        completed=completed,
        unsuccessful=unsuccessful,
        open_by_status=dict(sorted(open_by_status.items())),
        failures=tuple(
            FailureCount(status=status, reason=reason, tasks=count)
            for (status, reason), count in sorted(failures.items(), key=lambda item: (-item[1], item[0]))
        ),
        cost_usd=Spread.of([task_cost[run_id] for run_id in ended]),
        cost_usd_total=math.fsum(task_cost.values()),
        input_tokens=Spread.of([input_tokens[run_id] for run_id in ended]),
        output_tokens=Spread.of([output_tokens[run_id] for run_id in ended]),
        steps=Spread.of([steps[run_id] for run_id in ended]),
        tools=_tools(outcomes, root_of, tasks.keys()),
    )


def _tools(
    outcomes: Iterable[ToolCounts], root_of: Callable[[str], str | None], tasks: Iterable[str]
) -> tuple[ToolStats, ...]:
    wanted = set(tasks)
    tally: dict[str, list[int]] = {}
    for outcome in outcomes:
        if root_of(outcome.run_id) in wanted:
            counts = tally.setdefault(outcome.tool, [0, 0])
            counts[0] += outcome.calls
            counts[1] += outcome.failures
    tools = [ToolStats(tool=tool, calls=calls, failures=failures) for tool, (calls, failures) in tally.items()]
    tools.sort(key=lambda t: (-t.failures, -t.failure_rate, -t.calls, t.tool))
    return tuple(tools)
