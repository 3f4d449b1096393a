"""Supervisor and subagents: delegations are child runs (linked, own journals, spend charged to the parent),
independent ones run side by side, a failed child is a message the supervisor can act on, a crash of the tree
resumes without running a finished child again, and a child that pauses for a person pauses its supervisor."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    Budget,
    ConfigError,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    Store,
    call,
    calls,
    reply,
    require_approval,
    tool,
)
from agentkeel.core.state import replay

MakeAgent = Callable[..., Agent]


class Crash(BaseException):
    """The process dies."""


class Shop:
    def __init__(self) -> None:
        self.refunds: list[tuple[str, float]] = []
        self.lookups: list[str] = []
        self.started = 0
        self.both_started = asyncio.Event()
        self.overlapped = True

    def tools(self) -> tuple[Any, Any]:
        @tool
        async def get_order(order_id: str) -> dict[str, Any]:
            """Look an order up."""
            self.started += 1
            if self.started == 2:
                self.both_started.set()
            try:  # the first lookup waits for the second to start: only side-by-side delegations get there
                await asyncio.wait_for(self.both_started.wait(), timeout=5.0)
            except TimeoutError:
                self.overlapped = False
            self.lookups.append(order_id)
            return {"order_id": order_id, "paid": 40.0}

        @tool(effect="write", idempotent=True)
        def issue_refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self.refunds.append((order_id, amount))
            return f"refunded {amount}"

        return get_order, issue_refund


def researcher(shop: Shop, **settings: Any) -> Agent:
    get_order, _ = shop.tools()

    def script(request: ModelRequest) -> ModelResponse:
        task = request.messages[0].text  # type: ignore[union-attr]
        order = task.split()[-1]
        if not any(m.kind == "tool_result" for m in request.messages):
            return call("get_order", order_id=order)
        return reply(f"{order} was paid $40.")

    return Agent(name="researcher", model=ScriptedModel(script), tools=[get_order], **settings)


def refunder(shop: Shop, script: Any = None, **settings: Any) -> Agent:
    _, issue_refund = shop.tools()
    script = script or [call("issue_refund", order_id="#1", amount=40.0), reply("Refunded #1.")]
    return Agent(name="refunder", model=ScriptedModel(script), tools=[issue_refund], **settings)


SUPERVISOR_SCRIPT = [
    calls(
        ("delegate_to_researcher", {"task": "Check order #1"}),
        ("delegate_to_researcher", {"task": "Check order #2"}),
    ),
    call("delegate_to_refunder", task="Refund order #1: $40"),
    reply("#1 refunded; #2 checked."),
]


def supervisor(shop: Shop, store: Store, script: Any = None, **settings: Any) -> Agent:
    subagents = settings.pop("subagents", None) or [researcher(shop), refunder(shop)]
    return Agent(
        name="lead",
        model=ScriptedModel(script or list(SUPERVISOR_SCRIPT)),
        subagents=subagents,
        store=store,
        **settings,
    )


async def test_delegations_are_child_runs_and_independent_ones_run_together(store: Store) -> None:
    shop = Shop()
    lead = supervisor(shop, store)
    assert set(lead.tools) == {"delegate_to_researcher", "delegate_to_refunder"}
    result = await lead.run("Look into #1 and #2, refund #1")
    assert (result.status, result.output) == ("completed", "#1 refunded; #2 checked.")
    assert sorted(shop.lookups) == ["#1", "#2"] and shop.refunds == [("#1", 40.0)]
    assert shop.overlapped  # the two research delegations ran side by side
    children = [row for row in await store.list_runs(limit=10) if row.parent_id == result.run_id]
    assert sorted(row.run_id for row in children) == [f"{result.run_id}.{c}" for c in ("1.1", "1.2", "2.1")]
    child = replay(await store.load(f"{result.run_id}.1.2"))
    assert (child.agent, child.task, child.output) == ("researcher", "Check order #2", "#2 was paid $40.")
    seen = replay(await store.load(result.run_id)).calls["1.2"].finished
    assert seen is not None and seen.content == "#2 was paid $40."


def test_a_supervisor_holds_no_write_tool() -> None:
    shop = Shop()
    _, issue_refund = shop.tools()
    with pytest.raises(ConfigError, match="'issue_refund' is a write tool"):
        Agent(name="lead", model=ScriptedModel([reply("x")]), tools=[issue_refund], subagents=[refunder(shop)])


async def test_a_failed_child_is_a_message_the_supervisor_acts_on(store: Store, recording_model: Any) -> None:
    shop = Shop()
    stuck = refunder(shop, script=[call("issue_refund", order_id="#1", amount=40.0)] * 5, max_steps=2)
    model = recording_model([call("delegate_to_refunder", task="Refund #1"), reply("I could not refund #1.")])
    lead = Agent(name="lead", model=model, subagents=[stuck], store=store)
    result = await lead.run("Refund #1")
    assert (result.status, result.output) == ("completed", "I could not refund #1.")
    told = model.requests[-1].messages[-1]
    assert told.is_error and "could not finish: failed(max_steps_exceeded)" in told.content
    assert "try again with a narrower task" in told.content


async def test_children_charge_the_supervisors_budget(store: Store) -> None:
    shop = Shop()
    lead = supervisor(shop, store, budget=Budget(model_calls=5))  # 3 of its own + 2 per research child...
    result = await lead.run("Look into #1 and #2, refund #1")
    assert (result.status, result.reason) == ("failed", "budget_exceeded:model_calls")
    assert shop.refunds == []  # the refund delegation never got the budget it needed


async def test_a_crash_of_the_tree_resumes_without_running_a_finished_child_again(store: Store, clock: Any) -> None:
    shop = Shop()
    turns = {"n": 0}

    def dying(request: ModelRequest) -> ModelResponse:  # the supervisor's model: dies on its third turn
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        if turn == 2 and turns["n"] == 0:
            turns["n"] += 1
            raise Crash()
        return SUPERVISOR_SCRIPT[turn]

    lead = supervisor(shop, store, script=dying)
    with pytest.raises(Crash):
        await lead.run("Look into #1 and #2, refund #1", run_id="tree")
    assert shop.refunds == [("#1", 40.0)] and sorted(shop.lookups) == ["#1", "#2"]
    clock.advance(60)  # the dead process's lease runs out
    again = supervisor(shop, store, script=dying)  # another process
    result = await again.resume("tree")
    assert result.status == "completed"
    assert shop.refunds == [("#1", 40.0)] and sorted(shop.lookups) == ["#1", "#2"]  # nothing ran twice


async def test_a_child_that_pauses_for_approval_pauses_its_supervisor(store: Store) -> None:
    shop = Shop()
    gated = refunder(shop, gates=[require_approval("issue_refund", why="every refund")])
    lead = supervisor(shop, store, subagents=[researcher(shop), gated])
    paused = await lead.run("Look into #1 and #2, refund #1", run_id="tree2")
    assert (paused.status, paused.reason) == ("paused", "waiting_for_subagent")
    child_id = "tree2.2.1"
    assert child_id in paused.detail
    child = replay(await store.load(child_id))
    assert (child.status, child.reason, child.parent_id) == ("paused", "awaiting_approval", "tree2")
    still = await lead.resume("tree2")  # the child is not decided yet: nothing moves
    assert still.status == "paused" and shop.refunds == []
    await lead.approve(child_id, "1.1", by="ops")
    done = await lead.resume("tree2")  # resuming the supervisor resumes the child
    assert (done.status, done.output) == ("completed", "#1 refunded; #2 checked.")
    assert shop.refunds == [("#1", 40.0)]


async def test_a_crash_inside_a_child_resumes_the_child_from_its_own_journal(store: Store, clock: Any) -> None:
    shop = Shop()
    asked: list[int] = []

    def refunds_then_dies(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        asked.append(turn)
        if turn == 1 and asked.count(1) == 1:
            raise Crash()  # after the refund, before the child's answer
        return [call("issue_refund", order_id="#1", amount=40.0), reply("Refunded #1.")][turn]

    def lead_script() -> list[ModelResponse]:
        return [call("delegate_to_refunder", task="Refund #1"), reply("Refund done.")]

    def tree() -> Agent:
        child = refunder(shop, script=refunds_then_dies)
        return Agent(name="lead", model=ScriptedModel(lead_script()), subagents=[child], store=store)

    with pytest.raises(Crash):
        await tree().run("Refund #1", run_id="t3")
    clock.advance(60)  # the dead process's leases (supervisor and child) run out
    result = await tree().resume("t3")
    assert (result.status, result.output) == ("completed", "Refund done.")
    assert shop.refunds == [("#1", 40.0)]  # the child's journaled refund did not run again
    assert asked == [0, 1, 1]  # the child's first turn was not asked again
    child = replay(await store.load("t3.1.1"))
    assert child.status == "completed" and child.parent_id == "t3"


async def test_a_child_s_spend_before_a_crash_still_counts_against_the_supervisor_s_budget(
    store: Store, clock: Any
) -> None:
    """The supervisor's ledger is rebuilt from its own journal after a crash; a child that was mid-run then has
    spent model calls that only its journal records: they count, so the tree cannot overspend by restarting."""
    shop = Shop()
    asked: list[int] = []

    def dies_after_two_turns(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        asked.append(turn)
        if turn == 2 and asked.count(2) == 1:
            raise Crash()  # two turns spent, then the process dies
        script = [
            call("get_order", order_id="#1"),
            call("get_order", order_id="#2"),
            call("get_order", order_id="#3"),
            reply("done"),
        ]
        return script[turn]

    def tree() -> Agent:
        get_order, _ = shop.tools()
        shop.both_started.set()  # no waiting for a second lookup here
        child = Agent(name="researcher", model=ScriptedModel(dies_after_two_turns), tools=[get_order])
        lead = [call("delegate_to_researcher", task="Look up #1, #2, #3"), reply("All looked up.")]
        # 1 supervisor turn + 4 child turns + 1 supervisor turn = 6 model calls: one more than the budget
        return Agent(
            name="lead", model=ScriptedModel(lead), subagents=[child], store=store, budget=Budget(model_calls=5)
        )

    with pytest.raises(Crash):
        await tree().run("Look up three orders", run_id="t4")
    clock.advance(60)
    result = await tree().resume("t4")
    assert (result.status, result.reason) == ("failed", "budget_exceeded:model_calls")
    child = replay(await store.load("t4.1.1"))
    assert child.model_calls + replay(await store.load("t4")).model_calls <= 5  # never past the limit
