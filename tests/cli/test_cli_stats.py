"""``keel stats`` on real runs: a supervisor with a subagent, a worker whose tool fails, an agent stopped by its
step limit and one paused for an approval, all played offline by ``ScriptedModel`` with set token counts, so
that every figure can be worked out by hand from the script below."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta

import pytest
from keel_harness import ANSI, Keel

from agentkeel.core.events import RunEnded, RunStarted
from agentkeel.core.state import replay
from agentkeel.stores.base import RunRow
from agentkeel.stores.sqlite import SQLiteStore

DESK = '''
from agentkeel import Agent, ModelResponse, Price, PriceTable, ScriptedModel, Usage, call, reply, require_approval, tool

# $1 per million input tokens, $10 per million output tokens
PRICES = PriceTable().with_prices(scripted=Price(input=1.0, output=10.0))


def paid(turn: ModelResponse, input_tokens: int, output_tokens: int) -> ModelResponse:
    return ModelResponse(
        text=turn.text,
        tool_calls=turn.tool_calls,
        stop_reason=turn.stop_reason,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
    )


@tool
def lookup(order_id: str) -> str:
    """Find an order."""
    return f"order {order_id}: shipped"


@tool
def flaky(order_id: str) -> str:
    """A tool whose backend is down."""
    raise RuntimeError("the backend is down")


helper = Agent(
    name="helper",
    model=ScriptedModel([paid(call("lookup", order_id="1"), 2000, 200), paid(reply("shipped"), 2000, 200)]),
    tools=[lookup],
    prices=PRICES,
)
lead = Agent(
    name="lead",
    model=ScriptedModel(
        [paid(call("delegate_to_helper", task="where is order 1?"), 1000, 100), paid(reply("it shipped"), 1000, 100)]
    ),
    subagents=[helper],
    prices=PRICES,
)
worker = Agent(
    name="worker",
    model=ScriptedModel([paid(call("flaky", order_id="2"), 500, 50), paid(reply("could not check"), 500, 50)]),
    tools=[flaky],
    prices=PRICES,
)
spinner = Agent(
    name="spinner",
    model=ScriptedModel([paid(call("lookup", order_id="3"), 3000, 300), paid(reply("never reached"), 3000, 300)]),
    tools=[lookup],
    max_steps=1,
    prices=PRICES,
)
gated = Agent(
    name="gated",
    model=ScriptedModel([paid(call("lookup", order_id="4"), 1000, 100), paid(reply("done"), 1000, 100)]),
    tools=[lookup],
    gates=[require_approval("lookup", why="every lookup")],
    prices=PRICES,
)
'''


def usd(input_tokens: int, output_tokens: int) -> float:
    """What a turn costs at the desk's prices."""
    return (input_tokens * 1.0 + output_tokens * 10.0) / 1_000_000


# Each task by hand, from the script: its turns (a subagent's added in), tokens and steps.
LEAD = 2 * usd(1000, 100) + 2 * usd(2000, 200)  # two turns of its own, two of its helper's: 0.012
WORKER = 2 * usd(500, 50)  # 0.002, each of two runs
SPINNER = usd(3000, 300)  # one turn, then the step limit: 0.006
GATED = usd(1000, 100)  # one turn, then paused for the approval: open
ENDED = sorted([LEAD, WORKER, WORKER, SPINNER])  # 0.002 0.002 0.006 0.012


@pytest.fixture
def desk(keel: Keel) -> Keel:
    """The store after six tasks: lead (with its helper), worker twice, spinner, gated (paused)."""
    path = keel.write("desk.py", DESK)
    for name, code in (("lead", 0), ("worker", 0), ("worker", 0), ("spinner", 1), ("gated", 3)):
        result = keel("run", f"{path}:{name}", f"a task for {name}")
        assert result.exit_code == code, result.output
    return keel


def stats(keel: Keel, *args: str) -> dict[str, object]:
    result = keel("stats", "--json", *args)
    assert result.exit_code == 0, result.output
    figures: dict[str, object] = json.loads(result.stdout)
    return figures


def test_the_figures_are_those_of_the_runs(desk: Keel) -> None:
    figures = stats(desk)
    assert {key: figures[key] for key in ("tasks", "runs", "ended", "completed", "unsuccessful", "open")} == {
        "tasks": 5,
        "runs": 6,  # the helper's run is part of lead's task
        "ended": 4,
        "completed": 3,
        "unsuccessful": 1,
        "open": 1,
    }
    assert figures["open_by_status"] == {"paused": 1}
    assert figures["success_rate"] == 0.75  # 3 of the 4 ended; the paused task is not counted
    assert figures["failures"] == [{"status": "failed", "reason": "max_steps_exceeded", "tasks": 1}]
    # nearest rank over 0.002 0.002 0.006 0.012: p50 is the 2nd, p95 the 4th
    assert figures["cost_usd"] == {
        "mean": pytest.approx(sum(ENDED) / 4),
        "p50": pytest.approx(ENDED[1]),
        "p95": pytest.approx(ENDED[3]),
    }
    assert figures["cost_usd_total"] == pytest.approx(LEAD + 2 * WORKER + SPINNER + GATED)
    # input tokens per ended task: lead 2*1000 + 2*2000 = 6000, worker 1000 twice, spinner 3000
    assert figures["input_tokens"] == {"mean": 11000 / 4, "p50": 1000, "p95": 6000}
    assert figures["output_tokens"] == {"mean": 1100 / 4, "p50": 100, "p95": 600}
    # steps: lead 2 + helper 2 = 4, worker 2 twice, spinner 1
    assert figures["steps"] == {"mean": 9 / 4, "p50": 2, "p95": 4}
    # flaky failed in both worker runs; lookup ran in the helper and the spinner (the gated one waits, unfinished)
    assert figures["tools"] == [
        {"tool": "flaky", "calls": 2, "failures": 2, "failure_rate": 1.0},
        {"tool": "lookup", "calls": 2, "failures": 0, "failure_rate": 0.0},
        {"tool": "delegate_to_helper", "calls": 1, "failures": 0, "failure_rate": 0.0},
    ]
    assert figures["agent"] is None
    assert figures["since"] == pytest.approx(time.time() - 86_400, abs=60)  # the default window: 24h


def test_the_text_says_the_same(desk: Keel) -> None:
    result = desk("stats")
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert not ANSI.search(text)  # piped: plain text
    lines = text.splitlines()
    assert lines[0].startswith("5 tasks started since ") and lines[0].endswith("(the last 24h)")
    assert "3 completed, 1 not successful, 1 open (1 paused): not counted in the success rate" in text
    assert "75.0% (3 of 4 ended tasks)" in text
    assert "failed(max_steps_exceeded) 1" in text
    assert f"mean ${sum(ENDED) / 4:.4f} · p50 ${ENDED[1]:.4f} · p95 ${ENDED[3]:.4f}" in text
    assert f"all tasks ${LEAD + 2 * WORKER + SPINNER + GATED:.4f}" in text
    assert "input mean 2,750 · p50 1,000 · p95 6,000 · output mean 275 · p50 100 · p95 600" in text
    assert "mean 2.2 · p50 2 · p95 4" in text  # 9 / 4 = 2.25, to one place
    tools = lines[lines.index("most failing tools (the calls of every task in the window, open ones included)") :]
    assert [line.split() for line in tools[1:]] == [
        ["TOOL", "FAILURES", "CALLS", "RATE"],
        ["flaky", "2", "2", "100.0%"],
    ]


def test_agent_picks_its_tasks_with_their_subagents(desk: Keel) -> None:
    lead = stats(desk, "--agent", "lead")
    assert (lead["tasks"], lead["runs"], lead["agent"]) == (1, 2, "lead")
    assert lead["cost_usd"] == {"mean": pytest.approx(LEAD), "p50": pytest.approx(LEAD), "p95": pytest.approx(LEAD)}
    assert lead["tools"] == [  # the helper's lookup counts with its supervisor's task; a tie goes by name
        {"tool": "delegate_to_helper", "calls": 1, "failures": 0, "failure_rate": 0.0},
        {"tool": "lookup", "calls": 1, "failures": 0, "failure_rate": 0.0},
    ]
    worker = stats(desk, "--agent", "worker")
    assert (worker["tasks"], worker["success_rate"]) == (2, 1.0)
    assert worker["tools"] == [{"tool": "flaky", "calls": 2, "failures": 2, "failure_rate": 1.0}]
    helper = desk("stats", "--agent", "helper")  # only ever a subagent: no task of its own
    assert helper.exit_code == 0, helper.output
    assert helper.stdout.startswith("no tasks of agent helper started since ")


def test_since_sets_the_window(desk: Keel) -> None:
    old = _ended_run(desk, "old", agent="lead", days_ago=3)
    assert stats(desk)["tasks"] == 5  # 24h: the run of three days ago is out
    week = stats(desk, "--since", "7d")
    assert (week["tasks"], week["completed"]) == (6, 4)
    assert week["since"] == pytest.approx(time.time() - 7 * 86_400, abs=60)
    an_hour_ago = (datetime.now() - timedelta(hours=1)).isoformat(timespec="seconds")  # local time, as typed
    assert stats(desk, "--since", an_hour_ago)["tasks"] == 5
    assert stats(desk, "--since", "2d", "--agent", "lead")["tasks"] == 1
    assert stats(desk, "--since", "4d", "--agent", "lead")["tasks"] == 2
    assert stats(desk, "--since", "30m")["tasks"] == 5
    assert old in desk.run_ids()


def test_an_empty_window_says_so(keel: Keel) -> None:
    result = keel("stats", "--since", "2h")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no tasks started since ")
    assert "(the last 2h): nothing to count" in result.stdout
    figures = stats(keel)
    assert (figures["tasks"], figures["success_rate"], figures["cost_usd"], figures["tools"]) == (0, None, None, [])


@pytest.mark.parametrize("since", ["yesterday", "24", "-1d", "3 weeks", "2025-13-01"])
def test_a_bad_since_says_what_would_do(keel: Keel, since: str) -> None:
    result = keel("stats", "--since", since)
    assert result.exit_code == 2
    assert f"--since {since!r} is neither a duration nor a date" in result.stderr
    assert "24h" in result.stderr and "2025-06-01T09:30" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def _ended_run(keel: Keel, run_id: str, *, agent: str, days_ago: float) -> str:
    """A completed run started ``days_ago`` days ago (what a store holds after a few days of work)."""
    at = time.time() - days_ago * 86_400
    first = RunStarted(at=at, run_id=run_id, agent=agent, task="an old task", model="scripted")
    ended = RunEnded(at=at + 1, status="completed", output="done")

    async def write() -> None:
        store = SQLiteStore(keel.store_path)
        try:
            state = replay([first])
            await store.create_run(first, RunRow.of(state), owner="t", lease_s=30)
            state.apply(ended)
            await store.append(run_id, "t", 1, [ended], RunRow.of(state))
            await store.release_lease(run_id, "t")
        finally:
            await store.close()

    asyncio.run(write())
    return run_id
