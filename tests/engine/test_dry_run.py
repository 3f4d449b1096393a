"""Dry-run plans: read tools run, write tools only preview; the plan is approved as a whole; applying it makes
exactly the planned calls, in order, and refuses any other write call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import Agent, ConfigError, ModelRequest, ModelResponse, ResolveError, Store, call, reply, tool

MakeAgent = Callable[..., Agent]


class Shop:
    def __init__(self) -> None:
        self.refunds: list[tuple[str, float]] = []
        self.emails: list[str] = []
        self.lookups = 0

    def tools(self) -> list[Any]:
        @tool
        def lookup(order_id: str) -> dict[str, Any]:
            """Look an order up."""
            self.lookups += 1
            return {"order_id": order_id, "paid": 150.0}

        @tool(effect="write", idempotent=False)
        def refund(order_id: str, amount: float) -> str:
            """Refund an order."""
            self.refunds.append((order_id, amount))
            return f"refunded {amount}"

        @refund.preview
        def would_refund(order_id: str, amount: float) -> dict[str, Any]:
            return {"would_refund": amount, "order_id": order_id, "to": "card ending 4242"}

        @tool(effect="write")
        def send_email(to: str, body: str) -> str:
            """Send an email."""
            self.emails.append(to)
            return "sent"

        return [lookup, refund, send_email]


def planner(amount: float = 150.0) -> Callable[[ModelRequest], ModelResponse]:
    """Looks the order up, refunds it, emails the customer, answers."""

    def script(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        return [
            call("lookup", order_id="#1"),
            call("refund", order_id="#1", amount=amount),
            call("send_email", to="ana@example.com", body="Your refund is on its way."),
            reply("Refunded #1 and told Ana."),
        ][turn]

    return script


async def test_a_dry_run_runs_reads_previews_writes_and_makes_a_plan(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    shop = Shop()
    model = recording_model(planner())
    result = await make_agent(model, shop.tools()).run("Refund #1", dry_run=True)
    assert (result.status, result.mode) == ("completed", "dry_run")
    assert shop.lookups == 1 and shop.refunds == [] and shop.emails == []
    assert [(p.name, p.arguments, p.has_preview) for p in result.plan] == [
        ("refund", {"order_id": "#1", "amount": 150.0}, True),
        ("send_email", {"to": "ana@example.com", "body": "Your refund is on its way."}, False),
    ]
    assert result.plan[0].preview == {"would_refund": 150.0, "order_id": "#1", "to": "card ending 4242"}
    seen = [m.content for m in model.requests[-1].messages if m.kind == "tool_result"]
    assert "[dry run] refund was not run. Its preview:" in seen[1] and "card ending 4242" in seen[1]
    assert "has no preview" in seen[2]
    kinds = [e.kind for e in await store.load(result.run_id)]
    assert kinds.count("call_previewed") == 2 and kinds.count("tool_call_started") == 1


async def test_applying_the_plan_makes_exactly_the_planned_calls(make_agent: MakeAgent, store: Store) -> None:
    shop = Shop()
    agent = make_agent(planner(), shop.tools())
    planned = await agent.run("Refund #1", dry_run=True)
    applied = await agent.apply(planned.run_id, by="ops@desk")
    assert (applied.status, applied.mode) == ("completed", "apply")
    assert shop.refunds == [("#1", 150.0)] and shop.emails == ["ana@example.com"]
    first = (await store.load(applied.run_id))[0]
    assert first.kind == "run_started" and first.plan_of == planned.run_id and first.approved_by == "ops@desk"


async def test_applying_refuses_a_call_off_the_plan_and_the_agent_can_correct_itself(
    make_agent: MakeAgent, recording_model: Any
) -> None:
    shop = Shop()
    planned = await make_agent(planner(150.0), shop.tools()).run("Refund #1", dry_run=True)

    def deviating(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        return [
            call("lookup", order_id="#1"),
            call("refund", order_id="#1", amount=500.0),  # not what was approved
            call("refund", order_id="#1", amount=150.0),
            call("send_email", to="ana@example.com", body="Your refund is on its way."),
            reply("Done as planned."),
        ][turn]

    model = recording_model(deviating)
    applied = await make_agent(model, shop.tools()).apply(planned.run_id)
    assert applied.status == "completed"
    assert shop.refunds == [("#1", 150.0)]  # the off-plan refund never ran
    refused = model.requests[2].messages[-1]
    assert refused.is_error and "applies an approved plan" in refused.content
    assert 'the next planned call is refund({"order_id": "#1", "amount": 150.0})' in refused.content


async def test_an_agent_that_stops_before_the_plan_is_done_fails_plan_incomplete(make_agent: MakeAgent) -> None:
    shop = Shop()
    planned = await make_agent(planner(), shop.tools()).run("Refund #1", dry_run=True)
    quitter = [call("lookup", order_id="#1"), call("refund", order_id="#1", amount=150.0), reply("Enough.")]
    applied = await make_agent(quitter, shop.tools()).apply(planned.run_id)
    assert (applied.status, applied.reason, applied.output) == ("failed", "plan_incomplete", "Enough.")
    assert "send_email" in applied.detail and shop.emails == []


async def test_only_a_finished_dry_run_with_write_calls_can_be_applied(make_agent: MakeAgent) -> None:
    shop = Shop()
    agent = make_agent(planner(), shop.tools())
    normal = await agent.run("Refund #1")
    with pytest.raises(ResolveError, match="not a finished dry run"):
        await agent.apply(normal.run_id)
    reads = await make_agent([call("lookup", order_id="#1"), reply("paid")], shop.tools()).run("?", dry_run=True)
    with pytest.raises(ResolveError, match="nothing to apply"):
        await agent.apply(reads.run_id)


async def test_a_failing_preview_is_told_to_the_model_and_listed_without_a_preview(make_agent: MakeAgent) -> None:
    @tool(effect="write")
    def cancel_order(order_id: str) -> str:
        """Cancel an order."""
        return "cancelled"

    @cancel_order.preview
    def would_cancel(order_id: str) -> str:
        raise LookupError(f"no order {order_id}")

    result = await make_agent([call("cancel_order", order_id="#9"), reply("ok")], [cancel_order]).run(
        "cancel", dry_run=True
    )
    assert [(p.name, p.has_preview) for p in result.plan] == [("cancel_order", False)]


def test_only_write_tools_preview() -> None:
    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return order_id

    with pytest.raises(ConfigError, match="only write tools preview"):
        lookup.preview(lambda order_id: None)
