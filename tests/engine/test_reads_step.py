"""A step whose calls are all reads commits once: its response, intents and outcomes in one append after the reads.
A write's intent is durable before it runs; a slow read has what it holds written while it runs; a crash during a
read journals nothing of its step, and the resumed run asks the model again."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from agentkeel import Agent, MemoryStore, ScriptedModel, Store, ToolContext, call, calls, reply, tool
from agentkeel.core.events import Event
from agentkeel.engine import read_grace
from agentkeel.stores.base import RunRow, Signals

MakeAgent = Callable[..., Agent]


class CountingStore:
    """The fixture's store, with every append's event kinds recorded; ``started`` is set once an append carrying a
    call's intent returns (the intent is durable)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.appends: list[list[str]] = []
        self.started = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(
        self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None
    ) -> Signals:
        signals = await self.inner.append(run_id, owner, after_seq, events, row)
        kinds = [event.kind for event in events]
        self.appends.append(kinds)
        if "tool_call_started" in kinds:
            self.started.set()
        return signals


async def journal_kinds(store: Store, run_id: str) -> list[str]:
    return [event.kind for event in await store.load(run_id)]


async def test_a_step_of_reads_is_one_append_written_after_its_reads(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    counting = CountingStore(store)
    seen: list[list[str]] = []

    @tool
    async def lookup(order_id: str) -> dict[str, str]:
        seen.append([event.kind for run in await store.list_runs() for event in await store.load(run.run_id)])
        return {"order_id": order_id, "status": "shipped"}

    model = recording_model([call("lookup", order_id="#1"), call("lookup", order_id="#2"), reply("Both shipped.")])
    result = await make_agent(model, [lookup]).replace(store=counting).run("Where are my orders?")

    assert (result.status, result.output) == ("completed", "Both shipped.")
    assert seen == [["run_started"], ["run_started", "model_responded", "tool_call_started", "tool_call_finished"]]
    step = ["model_responded", "tool_call_started", "tool_call_finished"]
    assert counting.appends == [step, step, ["model_responded", "run_ended"]]
    assert await journal_kinds(store, result.run_id) == ["run_started", *step, *step, "model_responded", "run_ended"]


async def test_reads_side_by_side_share_their_steps_one_append(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    counting = CountingStore(store)

    @tool
    async def lookup(order_id: str) -> str:
        return f"{order_id} shipped"

    model = recording_model(
        [calls(("lookup", {"order_id": "#1"}), ("lookup", {"order_id": "#2"})), reply("Both shipped.")]
    )
    result = await make_agent(model, [lookup]).replace(store=counting).run("Where are my orders?")

    assert result.status == "completed"
    started, finished = ["tool_call_started"] * 2, ["tool_call_finished"] * 2
    assert counting.appends == [["model_responded", *started, *finished], ["model_responded", "run_ended"]]
    assert model.requests[1].messages[-1].content == "#2 shipped"


async def test_a_write_runs_only_once_its_intent_is_durable_and_a_step_with_one_commits_twice(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    counting = CountingStore(store)
    durable_when_run: list[bool] = []

    @tool
    async def lookup(order_id: str) -> str:
        durable_when_run.append(counting.started.is_set())
        return "shipped"

    @tool(effect="write", idempotent=True)
    async def refund(ctx: ToolContext, order_id: str) -> str:
        durable_when_run.append(counting.started.is_set())
        return "refunded"

    model = recording_model([calls(("lookup", {"order_id": "#1"}), ("refund", {"order_id": "#1"})), reply("Refunded.")])
    result = await make_agent(model, [lookup, refund]).replace(store=counting).run("Refund #1")

    assert result.status == "completed"
    assert durable_when_run == [True, True]  # the read runs after the intents too: its step has a write
    assert counting.appends[0] == ["model_responded", "tool_call_started", "tool_call_started"]
    assert counting.appends[1:3] == [["tool_call_finished"], ["tool_call_finished"]]


async def test_a_read_that_outlasts_the_grace_has_its_step_written_while_it_runs(
    make_agent: MakeAgent, recording_model: Any, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(read_grace, "READ_GRACE_S", 0.0)
    counting = CountingStore(store)

    @tool
    async def search(query: str) -> str:
        await asyncio.wait_for(counting.started.wait(), timeout=10.0)  # returns once the intent is durable
        return "3 results"

    model = recording_model([call("search", query="refund policy"), reply("Found it.")])
    result = await make_agent(model, [search]).replace(store=counting).run("Find the policy")

    assert (result.status, result.output) == ("completed", "Found it.")
    assert counting.appends == [
        ["model_responded", "tool_call_started"],
        ["tool_call_finished"],
        ["model_responded", "run_ended"],
    ]


async def test_a_crash_while_a_read_runs_journals_nothing_of_its_step_and_the_model_is_asked_again(
    make_agent: MakeAgent, recording_model: Any, store: Store, monkeypatch: pytest.MonkeyPatch, clock: Any
) -> None:
    monkeypatch.setattr(read_grace, "READ_GRACE_S", 3600.0)  # the step holds its events until the reads end
    running = asyncio.Event()

    @tool
    async def search(query: str) -> str:
        running.set()
        await asyncio.Event().wait()  # never returns: the process dies meanwhile
        return "unreachable"

    first = recording_model([call("search", query="policy")])
    run = asyncio.ensure_future(make_agent(first, [search]).run("Find the policy", run_id="r1"))
    await asyncio.wait_for(running.wait(), timeout=10.0)
    run.cancel()  # the driver dies with its step of reads under way
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await journal_kinds(store, "r1") == ["run_started"]  # nothing of the step: no response, no intent
    clock.advance(60.0)  # any lease left behind runs out

    @tool(name="search")
    async def search_again(query: str) -> str:
        return "3 results"

    second = recording_model([call("search", query="policy v2"), reply("Found it.")])
    result = await make_agent(second, [search_again]).resume("r1")

    assert (result.status, result.output) == ("completed", "Found it.")
    assert second.calls == 2  # step 1 asked again: its response had never been journaled
    kinds = await journal_kinds(store, "r1")
    assert kinds.count("model_responded") == 2 and kinds.count("tool_call_started") == 1


async def test_the_grace_writes_the_steps_still_holding_after_a_period_and_stops_when_its_drivers_leave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(read_grace, "READ_GRACE_S", 0.0)
    grace = read_grace.ReadGrace()
    written: list[str] = []
    wrote = asyncio.Event()

    class Driver:
        def __init__(self, name: str) -> None:
            self.name = name
            self.held_tick: int | None = None

        def write_held(self) -> None:
            written.append(f"{self.name} at tick {grace.tick}")
            wrote.set()

    slow, quick, idle = Driver("slow"), Driver("quick"), Driver("idle")
    for driver in (slow, quick, idle):
        grace.join(driver)
    slow.held_tick = quick.held_tick = grace.tick  # two steps of reads begin; idle holds nothing
    quick.held_tick = None  # its reads end in time
    await asyncio.wait_for(wrote.wait(), timeout=10.0)
    assert written == ["slow at tick 2"]  # the second tick after its step began: after a whole period
    assert slow.held_tick is None
    grace.leave(slow)
    grace.leave(quick)
    assert grace._timer is not None  # idle's drive goes on: the clock runs
    grace.leave(idle)
    assert grace._timer is None  # the clock stops with the last driver


def test_an_event_loop_that_ran_steps_of_reads_is_freed_once_it_is_gone() -> None:
    @tool
    async def lookup(order_id: str) -> str:
        return "shipped"

    agent = Agent(
        name="t", model=ScriptedModel([call("lookup", order_id="#1"), reply("ok")]), tools=[lookup], store=MemoryStore()
    )
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(agent.run("Where is #1?")).status == "completed"
    finally:
        loop.close()
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None  # the loop's ReadGrace holds no reference back to it
