"""Kill switches reach a live run before its next call: a disabled tool is not called (the model is told), a
killed agent's run ends cancelled with who and why, and a switch set from another store object (another process)
counts the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentkeel import Agent, ModelRequest, ModelResponse, Store, call, reply, tool
from agentkeel.switches import kill, revive

MakeAgent = Callable[..., Agent]


def desk(calls_made: list[str]) -> list[Any]:
    @tool(effect="write", idempotent=False)
    def refund(order_id: str) -> str:
        """Refund an order."""
        calls_made.append(f"refund {order_id}")
        return "refunded"

    @tool
    def lookup(order_id: str) -> str:
        """Look an order up."""
        calls_made.append(f"lookup {order_id}")
        return "delivered"

    return [refund, lookup]


async def test_a_tool_disabled_mid_run_is_not_called_and_the_model_is_told(
    make_agent: MakeAgent, store: Store, recording_model: Any
) -> None:
    made: list[str] = []

    async def script(request: ModelRequest) -> ModelResponse:
        turn = sum(1 for m in request.messages if m.kind == "assistant")
        if turn == 0:
            await kill(store, tool="refund", by="ops@desk", reason="fraud investigation")  # while the run is live
            return call("lookup", order_id="#1")
        if turn == 1:
            return call("refund", order_id="#1")
        return reply("Refunds are unavailable right now.")

    model = recording_model(script)
    result = await make_agent(model, desk(made)).run("Refund #1")
    assert result.status == "completed"
    assert made == ["lookup #1"]  # the refund never ran
    told = model.requests[-1].messages[-1]
    assert told.kind == "tool_result" and told.is_error
    assert "disabled by ops@desk" in told.content and "fraud investigation" in told.content
    state = await store.load(result.run_id)
    finished = [e for e in state if e.kind == "tool_call_finished" and e.name == "refund"]
    assert finished[0].error is not None and finished[0].error.kind == "disabled"

    await revive(store, tool="refund")
    again = await make_agent([call("refund", order_id="#2"), reply("ok")], desk(made)).run("Refund #2")
    assert again.status == "completed" and made[-1] == "refund #2"


async def test_killing_the_agent_ends_its_live_run_cancelled_before_the_next_call(
    make_agent: MakeAgent, store: Store
) -> None:
    made: list[str] = []

    async def script(request: ModelRequest) -> ModelResponse:
        if sum(1 for m in request.messages if m.kind == "assistant") == 0:
            await kill(store, agent="test", by="lead", reason="bad prompt")
            return call("refund", order_id="#1")
        raise AssertionError("the model is not asked again once the agent is killed")

    result = await make_agent(script, desk(made)).run("Refund #1")
    assert (result.status, result.reason) == ("cancelled", "cancelled")
    assert made == []  # the call journaled with the response did not run
    assert "lead" in result.detail and "bad prompt" in result.detail


async def test_a_switch_on_another_tool_or_agent_changes_nothing(make_agent: MakeAgent, store: Store) -> None:
    made: list[str] = []
    await kill(store, tool="send_email", by="ops", reason="spam")
    await kill(store, agent="billing", by="ops", reason="audit")
    result = await make_agent([call("refund", order_id="#1"), reply("ok")], desk(made)).run("Refund #1")
    assert result.status == "completed" and made == ["refund #1"]
