"""The task figures of ``keel stats`` against numbers worked out by hand from a small, known set of runs."""

from __future__ import annotations

import pytest

from agentkeel.observe.stats import FailureCount, Spread, ToolStats, percentile, task_stats
from agentkeel.stores.base import RunRow, ToolCounts

SINCE = 1_000.0


def run(
    run_id: str,
    status: str,
    *,
    cost: float,
    agent: str = "support",
    reason: str = "",
    parent: str | None = None,
    tokens: tuple[int, int] = (0, 0),
    steps: int = 0,
    at: float = SINCE + 10,
) -> RunRow:
    return RunRow(
        run_id=run_id,
        agent=agent,
        status=status,
        reason=reason,
        task=f"task {run_id}",
        model="m",
        steps=steps,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=cost,
        created_at=at,
        updated_at=at + 1,
        parent_id=parent,
    )


# Nine tasks in the window: three completed (one a supervisor whose two subagents, one with a subagent of its own,
# spent most of its cost), four not successful, two open; and a task from before the window whose late child falls
# inside it.
ROWS = [
    run("t1", "completed", cost=0.10, tokens=(100, 10), steps=2),
    run("t2", "completed", cost=0.35, tokens=(300, 30), steps=4),
    run("sup", "completed", cost=0.05, tokens=(50, 5), steps=3, agent="boss"),
    run("sup.1.1", "completed", cost=0.20, tokens=(200, 20), steps=2, agent="researcher", parent="sup"),
    run("sup.1.2", "completed", cost=0.15, tokens=(150, 15), steps=1, agent="researcher", parent="sup"),
    run("sup.1.2.1.1", "completed", cost=0.10, tokens=(100, 10), steps=1, agent="writer", parent="sup.1.2"),
    run("t3", "failed", reason="max_steps_exceeded", cost=0.40, tokens=(400, 40), steps=25),
    run("t4", "failed", reason="max_steps_exceeded", cost=0.20, tokens=(200, 20), steps=25),
    run("t5", "cancelled", reason="cancelled", cost=0.0, tokens=(0, 0), steps=0),
    run("t6", "rolled_back", cost=0.60, tokens=(600, 60), steps=6),
    run("o1", "running", cost=0.05, tokens=(50, 5), steps=1),
    run("o2", "paused", reason="needs_attention", cost=0.07, tokens=(70, 7), steps=1),
    run("old", "completed", cost=9.0, tokens=(9000, 900), steps=9, at=SINCE - 100),
    run("old.1.1", "completed", cost=5.0, tokens=(5000, 500), steps=5, parent="old", at=SINCE + 5),
]
OUTCOMES = [
    ToolCounts(run_id="t1", tool="lookup", calls=4, failures=1),
    ToolCounts(run_id="sup.1.1", tool="lookup", calls=2, failures=1),
    ToolCounts(run_id="sup.1.2.1.1", tool="refund", calls=2, failures=2),
    ToolCounts(run_id="o2", tool="refund", calls=1, failures=1),  # an open task's calls count
    ToolCounts(run_id="t3", tool="search", calls=5, failures=0),
    ToolCounts(run_id="old.1.1", tool="lookup", calls=10, failures=10),  # its task started before the window
    ToolCounts(run_id="old", tool="refund", calls=3, failures=3),
    ToolCounts(run_id="unlisted", tool="lookup", calls=1, failures=1),  # a run the listing did not hold
]

# By hand, per ended task (subagents added in): t1 0.10, t2 0.35, sup 0.05 + 0.20 + 0.15 + 0.10 = 0.50, t3 0.40,
# t4 0.20, t5 0.00, t6 0.60. Sorted: 0.00 0.10 0.20 0.35 0.40 0.50 0.60 (n = 7). Mean 2.15 / 7. Nearest rank:
# p50 is rank ceil(3.5) = 4 -> 0.35; p95 is rank ceil(6.65) = 7 -> 0.60.
ENDED_COSTS = [0.10, 0.35, 0.50, 0.40, 0.20, 0.0, 0.60]


def test_the_figures_of_a_known_window() -> None:
    stats = task_stats(ROWS, OUTCOMES, since=SINCE)
    assert (stats.tasks, stats.runs, stats.completed, stats.unsuccessful, stats.ended) == (9, 12, 3, 4, 7)
    assert stats.open_by_status == {"paused": 1, "running": 1}
    assert stats.open == 2
    assert stats.success_rate == pytest.approx(3 / 7)  # the two open tasks are not in it
    assert stats.failures == (
        FailureCount(status="failed", reason="max_steps_exceeded", tasks=2),
        FailureCount(status="cancelled", reason="cancelled", tasks=1),
        FailureCount(status="rolled_back", reason="", tasks=1),
    )
    assert stats.cost_usd is not None
    assert stats.cost_usd.mean == pytest.approx(2.15 / 7)
    assert stats.cost_usd.p50 == pytest.approx(0.35)
    assert stats.cost_usd.p95 == pytest.approx(0.60)
    assert stats.cost_usd_total == pytest.approx(2.15 + 0.05 + 0.07)  # open tasks spent money too
    # input tokens per ended task: 100, 300, 50+200+150+100 = 500, 400, 200, 0, 600 -> sorted 0 100 200 300 400 500 600
    assert stats.input_tokens == Spread(mean=pytest.approx(2100 / 7), p50=300, p95=600)  # type: ignore[arg-type]
    assert stats.output_tokens == Spread(mean=pytest.approx(210 / 7), p50=30, p95=60)  # type: ignore[arg-type]
    # steps: 2, 4, 3+2+1+1 = 7, 25, 25, 0, 6 -> sorted 0 2 4 6 7 25 25
    assert stats.steps == Spread(mean=pytest.approx(69 / 7), p50=6, p95=25)  # type: ignore[arg-type]


def test_the_tools_count_the_calls_of_the_window_s_tasks_and_their_subagents_the_most_failures_first() -> None:
    stats = task_stats(ROWS, OUTCOMES, since=SINCE)
    # lookup: t1 4/1 and the supervisor's child 2/1; refund: the grandchild 2/2 and open o2 1/1; search: t3 5/0.
    # The task from before the window (and its child inside it) and the unlisted run count for nothing.
    assert stats.tools == (
        ToolStats(tool="refund", calls=3, failures=3),
        ToolStats(tool="lookup", calls=6, failures=2),
        ToolStats(tool="search", calls=5, failures=0),
    )
    assert [t.failure_rate for t in stats.tools] == [1.0, pytest.approx(2 / 6), 0.0]


def test_a_tie_in_failures_goes_to_the_higher_failure_rate() -> None:
    rows = [run("a", "completed", cost=0.0), run("b", "completed", cost=0.0)]
    outcomes = [
        ToolCounts(run_id="a", tool="many", calls=10, failures=2),
        ToolCounts(run_id="b", tool="few", calls=2, failures=2),
    ]
    assert [t.tool for t in task_stats(rows, outcomes).tools] == ["few", "many"]


def test_an_agent_s_tasks_include_their_subagents_of_other_agents() -> None:
    stats = task_stats(ROWS, OUTCOMES, since=SINCE, agent="boss")
    assert (stats.tasks, stats.runs, stats.completed, stats.success_rate) == (1, 4, 1, 1.0)
    assert stats.cost_usd == Spread(mean=pytest.approx(0.50), p50=pytest.approx(0.50), p95=pytest.approx(0.50))  # type: ignore[arg-type]
    assert stats.tools == (
        ToolStats(tool="refund", calls=2, failures=2),
        ToolStats(tool="lookup", calls=2, failures=1),
    )
    # an agent that only ever runs as a subagent has no tasks of its own
    assert task_stats(ROWS, OUTCOMES, since=SINCE, agent="researcher").tasks == 0


def test_without_since_every_root_is_a_task() -> None:
    stats = task_stats(ROWS, OUTCOMES)
    assert (stats.tasks, stats.runs) == (10, 14)
    assert next(t for t in stats.tools if t.tool == "lookup") == ToolStats(tool="lookup", calls=16, failures=12)


def test_an_open_window_has_no_rate_and_no_per_task_figures() -> None:
    stats = task_stats([run("o1", "running", cost=0.3), run("o2", "rolling_back", cost=0.1)], since=SINCE)
    assert (stats.tasks, stats.ended, stats.open, stats.success_rate) == (2, 0, 2, None)
    assert stats.open_by_status == {"rolling_back": 1, "running": 1}
    assert (stats.cost_usd, stats.steps) == (None, None)
    assert stats.cost_usd_total == pytest.approx(0.4)


def test_the_json_names_every_figure() -> None:
    figures = task_stats(ROWS, OUTCOMES, since=SINCE, agent=None).to_json()
    assert figures["since"] == SINCE
    assert figures["since_utc"] == "1970-01-01T00:16:40+00:00"
    assert {key: figures[key] for key in ("tasks", "runs", "ended", "completed", "unsuccessful", "open")} == {
        "tasks": 9,
        "runs": 12,
        "ended": 7,
        "completed": 3,
        "unsuccessful": 4,
        "open": 2,
    }
    assert figures["open_by_status"] == {"paused": 1, "running": 1}
    assert figures["success_rate"] == pytest.approx(3 / 7)
    assert figures["failures"][0] == {"status": "failed", "reason": "max_steps_exceeded", "tasks": 2}
    assert figures["cost_usd"] == {"mean": pytest.approx(2.15 / 7), "p50": 0.35, "p95": 0.60}
    assert figures["steps"] == {"mean": pytest.approx(69 / 7), "p50": 6, "p95": 25}
    assert figures["tools"][0] == {"tool": "refund", "calls": 3, "failures": 3, "failure_rate": 1.0}
    assert set(figures) == {
        "since",
        "since_utc",
        "agent",
        "tasks",
        "runs",
        "ended",
        "completed",
        "unsuccessful",
        "open",
        "open_by_status",
        "success_rate",
        "failures",
        "cost_usd",
        "cost_usd_total",
        "input_tokens",
        "output_tokens",
        "steps",
        "tools",
    }
    empty = task_stats([], since=SINCE).to_json()
    assert (empty["tasks"], empty["success_rate"], empty["cost_usd"], empty["tools"]) == (0, None, None, [])


def test_percentiles_are_nearest_rank() -> None:
    twenty = [float(n) for n in range(20, 0, -1)]  # unsorted on purpose
    assert percentile(twenty, 95) == 19.0  # rank 0.95 * 20 = 19 exactly (a float product would say 19.000...04)
    assert percentile(twenty, 50) == 10.0  # linear interpolation would give 10.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 0)
