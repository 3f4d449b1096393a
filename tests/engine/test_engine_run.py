"""An agent with a scripted model and recorded tools: the right tools, in the right order, journaled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ModelResponse,
    Price,
    PriceTable,
    Store,
    ToolCall,
    ToolContext,
    ToolError,
    Usage,
    call,
    calls,
    reply,
    tool,
)
from agentkeel.core.events import ModelResponded, RunEnded, ToolCallFinished, ToolCallStarted
from agentkeel.core.state import replay

MakeAgent = Callable[..., Agent]


def support_tools(log: list[tuple[str, Any]]) -> list[Any]:
    @tool
    def get_order_status(order_id: str) -> dict[str, str]:
        """Look up an order."""
        log.append(("get_order_status", order_id))
        if order_id != "#1234":
            raise ToolError(f"Order {order_id} not found.")
        return {"order_id": order_id, "status": "delivered"}

    @tool
    async def get_policy(topic: str) -> str:
        """Read a policy."""
        log.append(("get_policy", topic))
        return "Refunds within 30 days of delivery."

    @tool(effect="write", idempotent=True)
    async def issue_refund(ctx: ToolContext, order_id: str, amount_usd: float) -> dict[str, Any]:
        """Refund an order."""
        log.append(("issue_refund", (order_id, amount_usd, ctx.idempotency_key)))
        return {"refund_id": f"rf-{ctx.call}", "amount_usd": amount_usd}

    return [get_order_status, get_policy, issue_refund]


async def test_the_tools_are_called_in_the_scripted_order_with_their_arguments(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    log: list[tuple[str, Any]] = []
    model = recording_model(
        [
            call("get_order_status", order_id="#1234"),
            call("get_policy", topic="refunds"),
            call("issue_refund", order_id="#1234", amount_usd=25.0),
            reply("Refunded $25 on order #1234."),
        ]
    )
    agent = make_agent(model, support_tools(log))
    result = await agent.run("Refund order #1234, it arrived broken.")

    assert (result.status, result.reason, result.output) == ("completed", "", "Refunded $25 on order #1234.")
    assert result.ok
    assert [name for name, _ in log] == ["get_order_status", "get_policy", "issue_refund"]
    assert log[0] == ("get_order_status", "#1234")
    assert log[2][1][:2] == ("#1234", 25.0)
    assert (result.steps, result.tool_calls, result.tool_errors) == (4, 3, 0)
    assert model.calls == 4

    journal = await store.load(result.run_id)
    assert [e.kind for e in journal] == [
        "run_started",
        *["model_responded", "tool_call_started", "tool_call_finished"] * 3,
        "model_responded",
        "run_ended",
    ]
    finished = [e for e in journal if isinstance(e, ToolCallFinished)]
    assert finished[0].result == {"order_id": "#1234", "status": "delivered"}
    assert finished[2].content == '{"refund_id":"rf-3.1","amount_usd":25.0}'
    state = await agent.state(result.run_id)
    assert state.status == "completed" and state.task == "Refund order #1234, it arrived broken."


async def test_the_model_sees_the_tool_results_in_its_next_request(make_agent: MakeAgent, recording_model: Any) -> None:
    log: list[tuple[str, Any]] = []
    model = recording_model([call("get_order_status", order_id="#1234"), reply("It was delivered.")])
    agent = make_agent(model, support_tools(log), instructions="You help customers.")
    await agent.run("Where is #1234?")

    first, second = model.requests
    assert first.instructions == "You help customers."
    assert [t.name for t in first.tools] == ["get_order_status", "get_policy", "issue_refund"]
    assert [m.kind for m in first.messages] == ["user"]
    assert [m.kind for m in second.messages] == ["user", "assistant", "tool_result"]
    result_message = second.messages[2]
    assert result_message.call_id == second.messages[1].tool_calls[0].id  # type: ignore[union-attr]
    assert result_message.content == '{"order_id":"#1234","status":"delivered"}'  # type: ignore[union-attr]
    assert result_message.is_error is False  # type: ignore[union-attr]


async def test_tool_errors_reach_the_model_and_the_run_goes_on(make_agent: MakeAgent, recording_model: Any) -> None:
    log: list[tuple[str, Any]] = []
    model = recording_model(
        [
            call("get_order_status", order_id="#9999"),
            call("get_order_status", order_id="#1234"),
            reply("Found it."),
        ]
    )
    result = await make_agent(model, support_tools(log)).run("Where is my order?")
    assert result.status == "completed"
    assert (result.tool_calls, result.tool_errors) == (2, 1)
    error = model.requests[1].messages[-1]
    assert (error.content, error.is_error) == ("Order #9999 not found.", True)  # type: ignore[union-attr]


async def test_a_bad_call_is_journaled_as_finished_without_running(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    log: list[tuple[str, Any]] = []
    model = recording_model(
        [
            calls(("get_order_status", {"order_id": 1234}), ("cancel_order", {}), ("get_policy", '{"topic": ')),
            reply("Sorry."),
        ]
    )
    result = await make_agent(model, support_tools(log)).run("Cancel my order")
    assert result.status == "completed"
    assert log == []
    assert (result.tool_calls, result.tool_errors) == (3, 3)
    journal = await store.load(result.run_id)
    assert [e.kind for e in journal] == [
        "run_started",
        "model_responded",
        *(["tool_call_finished"] * 3),
        "model_responded",
        "run_ended",
    ]
    kinds = [e.error.kind for e in journal if isinstance(e, ToolCallFinished) and e.error]
    assert kinds == ["invalid_arguments", "unknown_tool", "invalid_arguments"]
    assert all(m.is_error for m in model.requests[1].messages[2:])  # type: ignore[union-attr]


async def test_several_calls_in_one_response_run_in_order_with_call_ids(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    log: list[tuple[str, Any]] = []
    model = recording_model(
        [
            calls(
                ("issue_refund", {"order_id": "#1", "amount_usd": 1}),
                ("issue_refund", {"order_id": "#2", "amount_usd": 2}),
            ),
            reply("Both refunded."),
        ]
    )
    result = await make_agent(model, support_tools(log)).run("Refund #1 and #2")
    assert [entry[1][0] for entry in log] == ["#1", "#2"]
    started = [e for e in await store.load(result.run_id) if isinstance(e, ToolCallStarted)]
    assert [(e.call, e.tool_call_id) for e in started] == [("1.1", "call_1_1"), ("1.2", "call_1_2")]
    answer = model.requests[1].messages
    assert [m.call_id for m in answer[2:]] == ["call_1_1", "call_1_2"]  # type: ignore[union-attr]


async def test_read_tools_of_one_response_run_concurrently(make_agent: MakeAgent, recording_model: Any) -> None:
    first_in, second_in = asyncio.Event(), asyncio.Event()

    @tool
    async def first() -> str:
        first_in.set()
        await second_in.wait()  # only returns if `second` runs at the same time
        return "one"

    @tool
    async def second() -> str:
        second_in.set()
        await first_in.wait()
        return "two"

    model = recording_model([calls(("first", {}), ("second", {})), reply("done")])
    result = await asyncio.wait_for(make_agent(model, [first, second]).run("go"), timeout=10)
    assert result.status == "completed"
    # Results are journaled as they finish: here `second` finishes first.
    answers = {m.call_id: m.content for m in model.requests[1].messages[2:]}  # type: ignore[union-attr]
    assert answers == {"call_1_1": "one", "call_1_2": "two"}


async def test_write_tools_of_one_response_run_one_after_the_other(make_agent: MakeAgent, recording_model: Any) -> None:
    running: list[str] = []
    overlaps: list[list[str]] = []

    def make(name: str) -> Any:
        async def act() -> str:
            running.append(name)
            overlaps.append(list(running))
            await asyncio.sleep(0)
            running.remove(name)
            return name

        return tool(name=name, effect="write", idempotent=True)(act)

    model = recording_model([calls(("w1", {}), ("w2", {}), ("w3", {})), reply("done")])
    await make_agent(model, [make("w1"), make("w2"), make("w3")]).run("go")
    assert overlaps == [["w1"], ["w2"], ["w3"]]


async def test_idempotency_keys_are_stable_and_distinct_per_call(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    seen: list[tuple[str, str]] = []

    @tool(effect="write", idempotent=True)
    def charge(ctx: ToolContext, amount: int) -> str:
        seen.append((ctx.call, ctx.idempotency_key))
        return "ok"

    model = recording_model(
        [calls(("charge", {"amount": 1}), ("charge", {"amount": 1})), call("charge", amount=1), "ok"]
    )
    result = await make_agent(model, [charge]).run("charge thrice")
    keys = [key for _, key in seen]
    assert [c for c, _ in seen] == ["1.1", "1.2", "2.1"]
    assert len(set(keys)) == 3
    assert all(key.startswith(result.run_id) for key in keys)
    journal = await store.load(result.run_id)
    assert [e.idempotency_key for e in journal if isinstance(e, ToolCallStarted)] == keys

    other = await make_agent(model, [charge]).run("charge again")
    assert not set(keys) & {key for _, key in seen[3:]}
    assert other.run_id != result.run_id


async def test_the_result_carries_steps_usage_and_cost(make_agent: MakeAgent, recording_model: Any) -> None:
    @tool
    def lookup() -> str:
        return "ok"

    turn = ModelResponse(
        tool_calls=(ToolCall(id="a", name="lookup"),),
        stop_reason="tool_use",
        usage=Usage(input_tokens=1000, output_tokens=100),
    )
    final = ModelResponse(text="done", usage=Usage(input_tokens=2000, output_tokens=400, cache_read_tokens=1000))
    model = recording_model([turn, final], name="test:priced")
    prices = PriceTable(prices={"test:priced": Price(input=2.0, output=10.0, cache_read=0.5)})
    result = await make_agent(model, [lookup], prices=prices).run("go")

    assert result.steps == 2
    assert result.usage == Usage(input_tokens=3000, output_tokens=500, cache_read_tokens=1000)
    expected = (1000 * 2 + 100 * 10) / 1e6 + (1000 * 2 + 1000 * 0.5 + 400 * 10) / 1e6
    assert result.cost_usd == pytest.approx(expected)
    assert str(result).startswith(f"run {result.run_id}: completed after 2 steps, 3500 tokens, $0.0095")


async def test_a_model_missing_from_the_price_table_costs_nothing_but_counts_tokens(
    make_agent: MakeAgent, recording_model: Any
) -> None:
    result = await make_agent(recording_model(["hello"], name="test:unpriced")).run("hi")
    assert result.cost_usd == 0.0
    assert result.usage.total_tokens > 0


async def test_the_run_row_follows_the_run(make_agent: MakeAgent, store: Store) -> None:
    agent = make_agent(["answer"], name="rowcheck")
    result = await agent.run("a question")
    [row] = await store.list_runs(agent="rowcheck")
    assert (row.run_id, row.status, row.steps, row.task) == (result.run_id, "completed", 1, "a question")
    assert row.input_tokens == result.usage.input_tokens


async def test_deps_reach_the_tools(make_agent: MakeAgent) -> None:
    @tool
    def whoami(ctx: ToolContext) -> str:
        return f"{ctx.agent}:{ctx.deps}"

    agent = make_agent([call("whoami"), "done"], [whoami], deps="default-db")
    await agent.run("go")
    state_default = await agent.state((await agent.store.list_runs(limit=1))[0].run_id)
    assert state_default.messages[2].content == "test:default-db"  # type: ignore[union-attr]
    result = await agent.run("go", deps="other-db")
    assert (await agent.state(result.run_id)).messages[2].content == "test:other-db"  # type: ignore[union-attr]


async def test_a_chosen_run_id_is_used(make_agent: MakeAgent, store: Store) -> None:
    result = await make_agent(["hi"]).run("go", run_id="my-run-1")
    assert result.run_id == "my-run-1"
    assert isinstance((await store.load("my-run-1"))[-1], RunEnded)


async def test_every_model_turn_is_journaled_once(make_agent: MakeAgent, store: Store) -> None:
    @tool
    def noop() -> str:
        return "ok"

    result = await make_agent([call("noop"), call("noop"), "done"], [noop]).run("go")
    steps = [e.step for e in await store.load(result.run_id) if isinstance(e, ModelResponded)]
    assert steps == [1, 2, 3]
    assert replay(await store.load(result.run_id)).steps_completed == 3
