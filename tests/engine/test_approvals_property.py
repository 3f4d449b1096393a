"""A gated tool never runs without a recorded approval: random gates, random calls, random decisions, random
crashes (before or after any journal write), and every run carried to its end across as many processes as it takes.

Each execution of the write tool checks, at the moment it runs, the journal as the store holds it: if the call was
gated, a ``call_approved`` for it must be there, and the tool must run with the approved arguments.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentkeel import Agent, MemoryStore, RetryPolicy, ScriptedModel, ToolContext, calls, reply, tool
from agentkeel.core.events import Event
from agentkeel.core.state import replay
from agentkeel.engine.operator import resolve_call
from agentkeel.gates import deny, require_approval
from agentkeel.stores.base import RunRow

LEASE_S = 30.0


class Crash(BaseException):
    """The process dies (not an Exception: nothing catches it)."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Process:
    """One process's view of the shared store: it dies at its crash point, and stays dead."""

    inner: MemoryStore
    crash_at: int | None
    """The number of appends after which (or before which, see ``before``) this process dies."""
    before: bool
    appends: int = 0
    dead: bool = False

    def _check(self) -> None:
        if self.dead:
            raise Crash()

    async def append(self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None) -> Any:
        self._check()
        self.appends += 1
        if self.crash_at == self.appends and self.before:
            self.dead = True
            raise Crash()
        answer = await self.inner.append(run_id, owner, after_seq, events, row)
        if self.crash_at == self.appends:
            self.dead = True
            raise Crash()
        return answer

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        async def guarded(*args: Any, **kwargs: Any) -> Any:
            self._check()
            return await attribute(*args, **kwargs)

        return guarded


@dataclass
class World:
    store: MemoryStore
    executions: list[tuple[str, float]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def shop(world: World) -> list[Any]:
    @tool(effect="write", idempotent=False)
    async def refund(ctx: ToolContext, order_id: str, amount: float) -> dict[str, float]:
        """Refund an order."""
        state = replay(await world.store.load(ctx.run_id))
        approval = state.approvals.get(ctx.call)
        if approval is not None:
            if approval.decision != "approved":
                world.violations.append(f"{ctx.call} ran while {approval.decision}")
            elif approval.arguments != {"order_id": order_id, "amount": amount}:
                world.violations.append(f"{ctx.call} ran with {amount}, not the approved {approval.arguments}")
        world.executions.append((ctx.call, amount))
        return {"refunded": amount}

    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return f"{order_id}: delivered"

    return [refund, lookup]


call_st = st.one_of(
    st.tuples(st.just("refund"), st.integers(min_value=1, max_value=300).map(float)),
    st.tuples(st.just("lookup"), st.just(0.0)),
)
steps_st = st.lists(st.lists(call_st, min_size=1, max_size=3), min_size=1, max_size=4)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=steps_st,
    threshold=st.integers(min_value=0, max_value=300),
    deny_above=st.one_of(st.none(), st.integers(min_value=150, max_value=300)),
    crashes=st.lists(st.tuples(st.integers(min_value=1, max_value=12), st.booleans()), max_size=4),
    decisions=st.lists(st.sampled_from(["approve", "edit", "reject"]), min_size=12, max_size=12),
)
def test_a_gated_tool_never_runs_without_a_recorded_approval(
    steps: list[list[tuple[str, float]]],
    threshold: int,
    deny_above: int | None,
    crashes: list[tuple[int, bool]],
    decisions: list[str],
) -> None:
    asyncio.run(scenario(steps, threshold, deny_above, crashes, decisions))


async def scenario(
    steps: list[list[tuple[str, float]]],
    threshold: int,
    deny_above: int | None,
    crashes: list[tuple[int, bool]],
    decisions: list[str],
) -> None:
    clock = Clock()
    world = World(store=MemoryStore(clock=clock))
    turns = [
        calls(
            *(
                (name, {"order_id": f"#{i}", "amount": amount} if name == "refund" else {"order_id": f"#{i}"})
                for i, (name, amount) in enumerate(step)
            )
        )
        for step in steps
    ]
    gates = [require_approval("refund", when=lambda args: args["amount"] > threshold, why=f"above {threshold}")]
    if deny_above is not None:
        gates.insert(0, deny("refund", when=lambda args: args["amount"] > deny_above, why=f"above {deny_above}"))
    pending_crashes = list(crashes)
    decided = iter(decisions * 4)

    def agent() -> Agent:
        crash_at, before = pending_crashes.pop(0) if pending_crashes else (None, False)
        process = Process(world.store, crash_at, before)
        return Agent(
            name="desk",
            model=ScriptedModel([*turns, reply("done")]),
            tools=shop(world),
            store=process,  # type: ignore[arg-type]
            gates=gates,
            lease_s=LEASE_S,
            model_retry=RetryPolicy(retries=0),
        )

    run_id = "run-1"
    first = True
    for _ in range(60):  # each round: one process drives the run as far as it can
        current = agent()
        try:
            if first:
                first = False
                result = await current.run("refunds", run_id=run_id)
            else:
                result = await current.resume(run_id)
        except Crash:
            clock.now += LEASE_S + 1  # the dead process's lease runs out
            if not await exists(world.store, run_id):
                first = True  # it died before the run was created
            continue
        if result.status != "paused":
            break
        try:  # a person decides, through a process that may die too (while it holds the run's lease)
            await decide(current, world, run_id, decided)
        except Crash:
            clock.now += LEASE_S + 1
    else:
        raise AssertionError("the run did not end in 60 processes")

    assert world.violations == []
    final = replay(await world.store.load(run_id))
    assert final.terminal
    ran = [call_id for call_id, _ in world.executions]
    for call_id, approval in final.approvals.items():
        if approval.decision != "approved":
            assert call_id not in ran, f"{call_id} was {approval.decision} but ran"
        assert ran.count(call_id) <= 1, f"{call_id} ran {ran.count(call_id)} times"
    events = await world.store.load(run_id)
    asked = {  # what the model asked for, per call id
        f"{e.step}.{i}": c.arguments
        for e in events
        if e.kind == "model_responded"
        for i, c in enumerate(e.response.tool_calls, 1)
    }
    for call_id in ran:  # the gates were applied to what the model asked
        amount = asked[call_id]["amount"]  # type: ignore[index]
        assert deny_above is None or amount <= deny_above, f"{call_id} ({amount}) was denied but ran"
        if amount > threshold:
            assert final.approvals[call_id].decision == "approved", f"{call_id} ({amount}) ran without approval"
    for call_id in ran:  # every execution is journaled as started; gated ones after their approval
        kinds = [(e.kind, getattr(e, "call", None)) for e in events]
        assert ("tool_call_started", call_id) in kinds
        if call_id in final.approvals:
            assert kinds.index(("call_approved", call_id)) < kinds.index(("tool_call_started", call_id))


async def decide(current: Agent, world: World, run_id: str, decided: Iterator[str]) -> None:
    state = replay(await world.store.load(run_id))
    for call_id in state.awaiting:
        choice = next(decided)
        requested = state.approvals[call_id].requested
        if choice == "approve":
            await current.approve(run_id, call_id, by="ops")
        elif choice == "edit":
            edited = {**requested.arguments, "amount": float(requested.arguments["amount"]) / 2}
            await current.approve(run_id, call_id, args=edited, by="ops")
        else:
            await current.reject(run_id, call_id, reason="no", by="ops")
    for call_id in state.attention:  # a refund interrupted by a crash: a person says it did not happen
        await resolve_call(current.store, run_id, call_id, "skip", by="ops")


async def exists(store: MemoryStore, run_id: str) -> bool:
    try:
        await store.load(run_id)
    except Exception:
        return False
    return True
