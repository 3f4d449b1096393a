"""Rollback: the compensations of a run's finished write calls run last first, each once, journaled and resumable
after a crash; what cannot be undone pauses the run for a person; a policy rolls back failed or cancelled runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    Budget,
    ConfigError,
    ResolveError,
    Store,
    ToolContext,
    call,
    calls,
    reply,
    resolve_call,
    tool,
)
from agentkeel.core.state import replay

MakeAgent = Callable[..., Agent]


class Crash(BaseException):
    """The process dies."""


class Bank:
    """Refunds by idempotency key; voids are idempotent by the same key plus ``:undo``."""

    def __init__(self) -> None:
        self.refunds: dict[str, tuple[str, float]] = {}
        self.voids: list[str] = []
        self.undo_log: list[str] = []
        self.crash_in_void: set[str] = set()
        self.broken_voids: set[str] = set()

    def tools(self, *, compensate_fee: bool = False) -> list[Any]:
        @tool(effect="write", idempotent=True)
        def refund(ctx: ToolContext, order_id: str, amount: float) -> dict[str, Any]:
            """Refund an order."""
            self.refunds[ctx.idempotency_key] = (order_id, amount)
            return {"refund_id": ctx.idempotency_key, "amount": amount}

        @refund.compensate
        def void(ctx: ToolContext, order_id: str, amount: float, result: dict[str, Any]) -> dict[str, Any]:
            self.undo_log.append(f"{order_id} attempt {ctx.attempt}")
            if order_id in self.broken_voids:
                raise RuntimeError(f"the bank refused to void the refund of {order_id}")
            if ctx.idempotency_key not in self.voids:  # idempotent by key: a rerun voids nothing twice
                self.voids.append(ctx.idempotency_key)
                del self.refunds[result["refund_id"]]
            if order_id in self.crash_in_void:
                self.crash_in_void.discard(order_id)
                raise Crash()
            return {"voided": result["refund_id"]}

        @tool(effect="write", idempotent=True)
        def charge_fee(order_id: str) -> str:
            """Charge a handling fee."""
            return f"fee charged on {order_id}"

        if compensate_fee:

            @charge_fee.compensate
            def refund_fee(order_id: str) -> str:
                return f"fee refunded on {order_id}"

        @tool
        def lookup(order_id: str) -> str:
            """Look an order up."""
            return f"{order_id}: delivered"

        return [refund, charge_fee, lookup]


TWO_REFUNDS = [
    call("lookup", order_id="#1"),
    call("refund", order_id="#1", amount=10.0),
    call("refund", order_id="#2", amount=20.0),
    reply("Refunded both."),
]


async def test_a_rollback_undoes_the_write_calls_last_first_and_keeps_the_answer(
    make_agent: MakeAgent, store: Store
) -> None:
    bank = Bank()
    agent = make_agent(TWO_REFUNDS, bank.tools())
    done = await agent.run("Refund #1 and #2")
    assert done.status == "completed" and len(bank.refunds) == 2
    undone = await agent.rollback(done.run_id, by="ops", reason="customer withdrew")
    assert (undone.status, undone.reason, undone.output) == ("rolled_back", "rolled_back", "Refunded both.")
    assert bank.refunds == {} and bank.undo_log == ["#2 attempt 1", "#1 attempt 1"]
    events = await store.load(done.run_id)
    kinds = [e.kind for e in events]
    assert kinds[kinds.index("run_ended") + 1] == "rollback_started"
    started = next(e for e in events if e.kind == "rollback_started")
    assert started.calls == ("3.1", "2.1") and started.by == "ops" and started.why == "customer withdrew"
    assert kinds.count("compensation_started") == kinds.count("compensation_finished") == 2
    assert "undone: 3.1, 2.1" in undone.detail
    with pytest.raises(ResolveError, match="already rolled back"):
        await agent.rollback(done.run_id)
    assert bank.undo_log == ["#2 attempt 1", "#1 attempt 1"]  # each compensation ran once


async def test_a_call_without_compensation_pauses_the_rollback_for_a_person(make_agent: MakeAgent) -> None:
    bank = Bank()
    script = [call("refund", order_id="#1", amount=10.0), call("charge_fee", order_id="#1"), reply("ok")]
    agent = make_agent(script, bank.tools())
    done = await agent.run("go")
    paused = await agent.rollback(done.run_id)
    assert (paused.status, paused.reason) == ("paused", "rollback_incomplete")
    assert paused.needs_attention == ("2.1",) and "charge_fee" in paused.detail and "keel resolve" in paused.detail
    assert bank.refunds == {}  # the refund was undone all the same
    await resolve_call(agent.store, done.run_id, "2.1", "skip", by="ops")
    finished = await agent.resume(done.run_id)
    assert finished.status == "rolled_back" and "settled by a person: 2.1" in finished.detail


async def test_a_failed_compensation_pauses_and_rollback_tries_it_again(make_agent: MakeAgent) -> None:
    bank = Bank()
    agent = make_agent(TWO_REFUNDS, bank.tools())
    done = await agent.run("Refund #1 and #2")
    bank.broken_voids.add("#1")
    paused = await agent.rollback(done.run_id)
    assert (paused.status, paused.needs_attention) == ("paused", ("2.1",))
    assert "its compensation failed" in paused.detail
    assert list(bank.refunds.values()) == [("#1", 10.0)]  # #2 was voided
    with pytest.raises(ResolveError, match="keel rollback"):
        await resolve_call(agent.store, done.run_id, "2.1", "retry", by="ops")
    bank.broken_voids.clear()  # the bank is fixed
    again = await agent.rollback(done.run_id, reason="the bank is back")
    assert again.status == "rolled_back" and bank.refunds == {}
    assert bank.undo_log == ["#2 attempt 1", "#1 attempt 1", "#1 attempt 1"]


async def test_a_crash_inside_a_compensation_reruns_it_on_resume_with_the_same_key(make_agent: MakeAgent) -> None:
    bank = Bank()
    agent = make_agent(TWO_REFUNDS, bank.tools())
    done = await agent.run("Refund #1 and #2")
    bank.crash_in_void.add("#2")  # the void happens, then the process dies before it is journaled
    with pytest.raises(Crash):
        await agent.rollback(done.run_id)
    state = replay(await agent.store.load(done.run_id))
    assert state.status == "rolling_back" and state.rollback["3.1"].status == "started"
    other = make_agent(TWO_REFUNDS, bank.tools())  # another process
    finished = await other.resume(done.run_id)
    assert finished.status == "rolled_back" and bank.refunds == {}
    assert bank.undo_log == ["#2 attempt 1", "#2 attempt 2", "#1 attempt 1"]
    assert len(bank.voids) == 2  # the rerun voided nothing twice: same key


async def test_the_policy_rolls_back_a_failed_run(make_agent: MakeAgent, store: Store) -> None:
    bank = Bank()
    agent = make_agent(TWO_REFUNDS, bank.tools(), budget=Budget(model_calls=3), rollback_on="failure")
    result = await agent.run("Refund #1 and #2")
    assert result.status == "rolled_back" and bank.refunds == {}
    events = await store.load(result.run_id)
    ended = [e for e in events if e.kind == "run_ended"]
    assert [(e.status, e.reason) for e in ended] == [
        ("failed", "budget_exceeded:model_calls"),
        ("rolled_back", "rolled_back"),
    ]
    started = next(e for e in events if e.kind == "rollback_started")
    assert started.by == "policy" and "budget_exceeded:model_calls" in started.why


async def test_the_policy_rolls_back_a_cancelled_run_but_not_a_completed_one(make_agent: MakeAgent) -> None:
    bank = Bank()
    agent = make_agent(TWO_REFUNDS, bank.tools(), rollback_on=("failure", "cancel"))
    completed = await agent.run("Refund #1 and #2")
    assert completed.status == "completed" and len(bank.refunds) == 2

    async def cancelling(request: Any) -> Any:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        if turn == 2:
            run_id = (await agent.store.list_runs(limit=1))[0].run_id
            await agent.store.request_cancel(run_id, _cancel())
        return TWO_REFUNDS[turn]

    cancelled = await make_agent(cancelling, bank.tools(), rollback_on="cancel").run("Refund again")
    assert cancelled.status == "rolled_back"
    assert len(bank.refunds) == 2  # the second run's refund was voided; the first run's stand


def _cancel() -> Any:
    from agentkeel.stores.base import CancelRequest

    return CancelRequest(by="ops", reason="wrong customer", at=1.0)


async def test_nothing_to_undo_and_read_calls_are_never_compensated(make_agent: MakeAgent) -> None:
    bank = Bank()
    agent = make_agent([call("lookup", order_id="#1"), reply("delivered")], bank.tools())
    done = await agent.run("status?")
    with pytest.raises(ResolveError, match="no finished write call"):
        await agent.rollback(done.run_id)
    fee = make_agent([calls(("charge_fee", {"order_id": "#9"})), reply("ok")], bank.tools(compensate_fee=True))
    charged = await fee.run("fee")
    assert (await fee.rollback(charged.run_id)).status == "rolled_back"


def test_only_a_write_tool_can_declare_a_compensation_and_the_policy_is_checked(make_agent: MakeAgent) -> None:
    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return order_id

    with pytest.raises(ConfigError, match="only a write tool"):
        lookup.compensate(lambda order_id: None)
    with pytest.raises(ConfigError, match="rollback_on"):
        make_agent([reply("x")], [lookup], rollback_on="always")


async def test_rolling_back_again_after_a_crash_goes_on_where_it_stopped(make_agent: MakeAgent) -> None:
    bank = Bank()
    agent = make_agent(TWO_REFUNDS, bank.tools())
    run = await agent.run("Refund #1 and #2")
    bank.crash_in_void.add("#2")
    with pytest.raises(Crash):
        await agent.rollback(run.run_id)
    finished = await make_agent(TWO_REFUNDS, bank.tools()).rollback(run.run_id)  # not resume: rollback again
    assert finished.status == "rolled_back" and bank.refunds == {}
    assert bank.undo_log == ["#2 attempt 1", "#2 attempt 2", "#1 attempt 1"]  # the interrupted one is attempt 2
    kinds = [e.kind for e in await agent.store.load(run.run_id)]
    assert kinds.count("rollback_started") == 1 and "run_resumed" in kinds
