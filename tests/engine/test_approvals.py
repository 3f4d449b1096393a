"""Approval gates: a gated call waits for a person, runs only once approved (with edited arguments if given),
never runs once rejected or denied, and survives the process in between."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ConfigError,
    ResolveError,
    Store,
    call,
    calls,
    deny,
    reply,
    require_approval,
    tool,
)
from agentkeel.core.state import replay

MakeAgent = Callable[..., Agent]


class Shop:
    """Records every refund that really happened."""

    def __init__(self) -> None:
        self.refunds: list[tuple[str, float]] = []
        self.lookups = 0

    def tools(self) -> list[Any]:
        @tool(effect="write", idempotent=False)
        def refund(order_id: str, amount: float) -> dict[str, Any]:
            """Refund an order."""
            self.refunds.append((order_id, amount))
            return {"refunded": amount}

        @tool
        def lookup(order_id: str) -> dict[str, str]:
            """Look an order up."""
            self.lookups += 1
            return {"order_id": order_id, "status": "delivered"}

        return [refund, lookup]


ABOVE_100 = require_approval("refund", when=lambda args: args["amount"] > 100, why="refunds above $100")


async def test_a_gated_call_waits_then_runs_once_approved(make_agent: MakeAgent, store: Store) -> None:
    shop = Shop()
    script = [call("refund", order_id="#1", amount=150.0), reply("Refunded.")]
    agent = make_agent(script, shop.tools(), gates=[ABOVE_100])
    paused = await agent.run("Refund #1")
    assert (paused.status, paused.reason) == ("paused", "awaiting_approval")
    assert shop.refunds == []
    state = await agent.state(paused.run_id)
    assert state.awaiting == ("1.1",)
    assert state.approvals["1.1"].requested.why == "refunds above $100"
    assert "keel approve" in state.detail and "refunds above $100" in state.detail
    again = await agent.resume(paused.run_id)  # nothing decided yet: still waiting, nothing ran
    assert (again.status, again.reason) == ("paused", "awaiting_approval") and shop.refunds == []

    await agent.approve(paused.run_id, "1.1", by="ops")
    done = await agent.resume(paused.run_id)
    assert (done.status, done.output) == ("completed", "Refunded.")
    assert shop.refunds == [("#1", 150.0)]
    final = await agent.state(paused.run_id)
    assert final.approvals["1.1"].decision == "approved" and final.approvals["1.1"].by == "ops"
    assert final.calls["1.1"].finished is not None and final.calls["1.1"].finished.result == {"refunded": 150.0}


async def test_below_the_threshold_the_call_runs_without_a_person(make_agent: MakeAgent) -> None:
    shop = Shop()
    agent = make_agent(
        [call("refund", order_id="#1", amount=40.0), reply("Refunded.")], shop.tools(), gates=[ABOVE_100]
    )
    result = await agent.run("Refund #1")
    assert result.status == "completed" and shop.refunds == [("#1", 40.0)]


async def test_an_approval_with_edited_arguments_runs_with_them(make_agent: MakeAgent) -> None:
    shop = Shop()
    agent = make_agent([call("refund", order_id="#1", amount=150.0), reply("ok")], shop.tools(), gates=[ABOVE_100])
    paused = await agent.run("Refund #1")
    with pytest.raises(ResolveError, match="amount"):
        await agent.approve(paused.run_id, "1.1", args={"order_id": "#1", "amount": "a lot"})
    await agent.approve(paused.run_id, "1.1", args={"order_id": "#1", "amount": 100})
    await agent.resume(paused.run_id)
    assert shop.refunds == [("#1", 100.0)]
    state = await agent.state(paused.run_id)
    assert state.calls["1.1"].arguments == {"order_id": "#1", "amount": 100.0}


async def test_a_rejected_call_never_runs_and_the_model_reads_why(make_agent: MakeAgent, recording_model: Any) -> None:
    shop = Shop()
    model = recording_model([call("refund", order_id="#1", amount=150.0), reply("I could not refund it.")])
    agent = make_agent(model, shop.tools(), gates=[ABOVE_100])
    paused = await agent.run("Refund #1")
    with pytest.raises(ResolveError, match="say why"):
        await agent.reject(paused.run_id, "1.1", reason=" ")
    await agent.reject(paused.run_id, "1.1", reason="no receipt", by="ops")
    done = await agent.resume(paused.run_id)
    assert done.status == "completed" and shop.refunds == []
    seen = model.requests[-1].messages[-1]
    assert seen.kind == "tool_result" and seen.is_error and "ops rejected the call (no receipt)" in seen.content
    with pytest.raises(ResolveError, match="not waiting for approval"):
        await agent.approve(paused.run_id, "1.1")


async def test_a_denied_call_is_refused_at_once_with_the_rule(make_agent: MakeAgent, recording_model: Any) -> None:
    shop = Shop()
    model = recording_model([call("refund", order_id="#1", amount=5.0), reply("Cannot.")])
    agent = make_agent(model, shop.tools(), gates=[deny("refund", why="refunds are closed today"), ABOVE_100])
    result = await agent.run("Refund #1")
    assert result.status == "completed" and shop.refunds == []
    seen = model.requests[-1].messages[-1]
    assert "refunds are closed today" in seen.content and "Do not call it again" in seen.content
    state = await agent.state(result.run_id)
    assert state.tool_errors == 1 and not state.approvals


async def test_several_gated_calls_are_decided_one_by_one_and_the_others_run(make_agent: MakeAgent) -> None:
    shop = Shop()
    step = calls(
        ("refund", {"order_id": "#1", "amount": 150.0}),
        ("lookup", {"order_id": "#2"}),
        ("refund", {"order_id": "#3", "amount": 300.0}),
    )
    agent = make_agent([step, reply("done")], shop.tools(), gates=[ABOVE_100])
    paused = await agent.run("Refund them")
    assert shop.lookups == 1 and shop.refunds == []  # the ungated call ran meanwhile
    state = await agent.state(paused.run_id)
    assert state.awaiting == ("1.1", "1.3")
    await agent.approve(paused.run_id, "1.3")
    still = await agent.resume(paused.run_id)
    assert (still.status, still.reason) == ("paused", "awaiting_approval") and shop.refunds == []
    await agent.reject(paused.run_id, "1.1", reason="duplicate")
    done = await agent.resume(paused.run_id)
    assert done.status == "completed"
    assert shop.refunds == [("#3", 300.0)]


async def test_write_tools_gated_by_effect_and_a_failing_rule_fails_closed(make_agent: MakeAgent) -> None:
    shop = Shop()

    def broken(args: dict[str, Any]) -> bool:
        raise KeyError("currency")

    agent = make_agent(
        [calls(("lookup", {"order_id": "#1"}), ("refund", {"order_id": "#1", "amount": 1.0})), reply("ok")],
        shop.tools(),
        gates=[require_approval("lookup", when=broken), require_approval(effect="write")],
    )
    paused = await agent.run("go")
    state = await agent.state(paused.run_id)
    assert state.awaiting == ("1.1", "1.2") and shop.lookups == 0 and shop.refunds == []
    assert "raised KeyError" in state.approvals["1.1"].requested.why
    assert state.approvals["1.2"].requested.why == "write tools need approval"


def test_gates_that_name_an_unknown_tool_are_refused_when_the_agent_is_built(make_agent: MakeAgent) -> None:
    with pytest.raises(ConfigError, match="refnud"):
        make_agent([reply("x")], Shop().tools(), gates=[require_approval("refnud")])
    with pytest.raises(ConfigError, match="not a gate"):
        make_agent([reply("x")], Shop().tools(), gates=["refund"])


async def test_a_crash_between_the_approval_and_the_call_runs_it_once_on_resume(make_agent: MakeAgent) -> None:
    shop = Shop()
    agent = make_agent([call("refund", order_id="#1", amount=150.0), reply("ok")], shop.tools(), gates=[ABOVE_100])
    paused = await agent.run("Refund #1")
    await agent.approve(paused.run_id, "1.1")
    # another process resumes: same store, a new agent object
    other = make_agent([call("refund", order_id="#1", amount=150.0), reply("ok")], shop.tools(), gates=[ABOVE_100])
    assert (await other.resume(paused.run_id)).status == "completed"
    assert (await other.resume(paused.run_id)).status == "completed"  # a second resume does nothing more
    assert shop.refunds == [("#1", 150.0)]
    kinds = [e.kind for e in await other.store.load(paused.run_id)]
    assert kinds.count("tool_call_started") == 1


async def test_the_journal_tells_the_whole_decision(make_agent: MakeAgent) -> None:
    shop = Shop()
    agent = make_agent([call("refund", order_id="#1", amount=150.0), reply("ok")], shop.tools(), gates=[ABOVE_100])
    paused = await agent.run("Refund #1")
    await agent.approve(paused.run_id, "1.1", by="ops@desk")
    await agent.resume(paused.run_id)
    events = await agent.store.load(paused.run_id)
    kinds = [e.kind for e in events]
    assert kinds.index("approval_requested") < kinds.index("run_paused") < kinds.index("call_approved")
    assert kinds.index("call_approved") < kinds.index("tool_call_started") < kinds.index("tool_call_finished")
    assert replay(events).approvals["1.1"].by == "ops@desk"
