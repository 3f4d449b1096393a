"""Resume without repeats: journaled model turns are not asked again, finished calls do not run again, and calls
interrupted by a crash are resolved by their tool's contract."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    JournalError,
    ModelResponse,
    Reconciled,
    RunBusy,
    RunNotFound,
    Store,
    ToolCall,
    ToolContext,
    reply,
    tool,
)
from agentkeel.core.events import (
    Event,
    ModelResponded,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.state import replay
from agentkeel.stores.base import CancelRequest, RunRow

MakeAgent = Callable[..., Agent]

RUN = "r1"
ARGS = {"order_id": "#1234", "amount_usd": 25.0}
REFUND_RESULT = {"refund_id": "rf-1", "amount_usd": 25.0}


async def interrupted(
    store: Store,
    clock: Any,
    *,
    name: str = "refund",
    arguments: dict[str, Any] | None = None,
    finished_steps: int = 0,
    agent: str = "test",
    expire: bool = True,
    open_call: bool = True,
) -> None:
    """A journal whose driver died: ``finished_steps`` complete steps, then (``open_call``) one started call."""
    now = time.time()
    arguments = ARGS if arguments is None else arguments
    first = RunStarted(at=now, run_id=RUN, agent=agent, task="Refund order #1234", model="scripted", tools=(name,))
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner="dead-driver", lease_s=30.0)
    events: list[Event] = []
    for step in range(1, finished_steps + 1 + open_call):
        call_id, tool_call_id = f"{step}.1", f"call_{step}_1"
        response = ModelResponse(
            tool_calls=(ToolCall(id=tool_call_id, name=name, arguments=arguments),), stop_reason="tool_use"
        )
        events.append(ModelResponded(at=now, step=step, response=response))
        events.append(
            ToolCallStarted(
                at=now,
                call=call_id,
                tool_call_id=tool_call_id,
                name=name,
                arguments=arguments,
                idempotency_key=f"{RUN}:{call_id}",
            )
        )
        if step <= finished_steps:
            events.append(
                ToolCallFinished(at=now, call=call_id, tool_call_id=tool_call_id, name=name, content="done before")
            )
    after = state.last_seq
    for event in events:
        state.apply(event)
    await store.append(RUN, "dead-driver", after, events, RunRow.of(state))
    if expire:
        clock.advance(31.0)  # the dead driver's lease runs out


class Effects:
    """The tools' side effects, by idempotency key."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.attempts: list[int] = []

    def record(self, ctx: ToolContext) -> dict[str, Any]:
        self.keys.append(ctx.idempotency_key)
        self.attempts.append(ctx.attempt)
        return REFUND_RESULT


def refund_tool(effects: Effects, **contract: Any) -> Any:
    @tool(name="refund", **contract)
    async def refund(ctx: ToolContext, order_id: str, amount_usd: float) -> dict[str, Any]:
        return effects.record(ctx)

    return refund


def script() -> list[Any]:
    # turn 1 is journaled already: a resumed run must never ask for it again
    return [reply("MUST NOT BE REQUESTED"), reply("Refunded.")]


# -- resuming ended and live runs ------------------------------------------------------------------------------


async def test_resuming_a_completed_run_returns_its_result_without_calling_the_model(
    make_agent: MakeAgent, recording_model: Any
) -> None:
    first = await make_agent(["The answer."]).run("question")
    model = recording_model(["another answer"])
    again = await make_agent(model).resume(first.run_id)
    assert again == first
    assert model.calls == 0


async def test_resuming_an_unknown_run_raises_run_not_found(make_agent: MakeAgent) -> None:
    with pytest.raises(RunNotFound):
        await make_agent(["x"]).resume("nope")


async def test_resuming_with_an_agent_that_lacks_a_called_tool_is_refused(
    make_agent: MakeAgent, store: Store, clock: Any
) -> None:
    await interrupted(store, clock, finished_steps=1)
    with pytest.raises(JournalError, match="called tool\\(s\\) refund, which agent 'test' no longer has"):
        await make_agent(script()).resume(RUN)
    assert len(await store.load(RUN)) == 6  # nothing appended


async def test_resuming_with_another_agent_is_refused(make_agent: MakeAgent, store: Store, clock: Any) -> None:
    await interrupted(store, clock, agent="billing")
    with pytest.raises(JournalError, match="belongs to agent 'billing', not 'test'"):
        await make_agent(script(), [refund_tool(Effects())]).resume(RUN)


async def test_resuming_a_run_another_process_drives_raises_run_busy(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock, expire=False)
    effects = Effects()
    model = recording_model(script())
    with pytest.raises(RunBusy, match="being driven by dead-driver"):
        await make_agent(model, [refund_tool(effects, effect="write", idempotent=True)]).resume(RUN)
    assert effects.keys == [] and model.calls == 0
    assert len(await store.load(RUN)) == 3


async def test_a_crash_between_steps_resumes_at_the_next_step(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock, finished_steps=2)  # steps 1 and 2 done, step 3's call interrupted
    effects = Effects()
    model = recording_model([reply("1"), reply("2"), reply("3"), reply("Refunded.")])
    result = await make_agent(model, [refund_tool(effects, effect="read")]).resume(RUN)
    assert result.status == "completed" and result.output == "Refunded."
    assert effects.keys == [f"{RUN}:3.1"]  # only the interrupted call runs; finished ones do not
    assert model.calls == 1
    conversation = model.requests[0].messages
    assert [m.kind for m in conversation] == ["user", *["assistant", "tool_result"] * 3]
    journal = await store.load(RUN)
    assert sum(isinstance(e, RunResumed) for e in journal) == 1
    assert [e.step for e in journal if isinstance(e, ModelResponded)] == [1, 2, 3, 4]


async def test_a_crash_after_a_finished_call_asks_the_model_for_the_next_step_only(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock, finished_steps=1, open_call=False)
    effects = Effects()
    model = recording_model([reply("1"), reply("Refunded.")])
    result = await make_agent(model, [refund_tool(effects, effect="write")]).resume(RUN)
    assert (result.status, result.output, result.steps) == ("completed", "Refunded.", 2)
    assert effects.keys == []
    assert model.calls == 1
    assert model.requests[0].messages[-1].content == "done before"  # type: ignore[union-attr]


# -- interrupted calls -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "contract", [{"effect": "read"}, {"effect": "write", "idempotent": True}], ids=["read", "idempotent-write"]
)
async def test_an_interrupted_call_safe_to_repeat_runs_again_with_the_same_key(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any, contract: dict[str, Any]
) -> None:
    await interrupted(store, clock)
    effects = Effects()
    model = recording_model(script())
    result = await make_agent(model, [refund_tool(effects, **contract)]).resume(RUN)
    assert (result.status, result.output) == ("completed", "Refunded.")
    assert effects.keys == [f"{RUN}:1.1"]  # the key journaled before the crash
    assert model.calls == 1
    assert model.requests[0].messages[-1].content == '{"refund_id":"rf-1","amount_usd":25.0}'  # type: ignore[union-attr]
    resumed = [e for e in await store.load(RUN) if isinstance(e, ToolCallResumed)]
    why = "read" if contract["effect"] == "read" else "idempotent"
    assert [(e.call, e.attempt, e.why) for e in resumed] == [("1.1", 1, why)]


async def test_an_interrupted_call_continues_its_attempts(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock)
    state = replay(await store.load(RUN))
    retrying = ToolCallRetrying(
        at=time.time(), call="1.1", attempt=1, error=ToolFailure(kind="exception", message="x"), delay_s=0.0
    )
    after = state.last_seq
    state.apply(retrying)
    await store.acquire_lease(RUN, "dead-driver-2", 30.0)
    await store.append(RUN, "dead-driver-2", after, [retrying], RunRow.of(state))
    clock.advance(31.0)
    effects = Effects()
    await make_agent(recording_model(script()), [refund_tool(effects, effect="read")]).resume(RUN)
    assert effects.attempts == [2]


async def test_a_reconcile_hook_that_finds_the_effect_stops_a_second_one(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock)
    effects = Effects()
    asked: list[tuple[str, str, float]] = []
    refund = refund_tool(effects, effect="write")

    @refund.reconcile
    async def find_refund(ctx: ToolContext, order_id: str, amount_usd: float) -> Reconciled:
        asked.append((ctx.idempotency_key, order_id, amount_usd))
        return Reconciled(happened=True, result={"refund_id": "rf-found"})

    model = recording_model(script())
    result = await make_agent(model, [refund]).resume(RUN)
    assert result.status == "completed"
    assert effects.keys == []
    assert asked == [(f"{RUN}:1.1", "#1234", 25.0)]
    answer = model.requests[0].messages[-1]
    assert (answer.content, answer.is_error) == ('{"refund_id":"rf-found"}', False)  # type: ignore[union-attr]
    finished = [e for e in await store.load(RUN) if isinstance(e, ToolCallFinished)]
    assert [(e.call, e.result, e.attempts) for e in finished] == [("1.1", {"refund_id": "rf-found"}, 0)]


async def test_a_reconcile_hook_that_finds_nothing_lets_the_call_run_again(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock)
    effects = Effects()
    refund = refund_tool(effects, effect="write")

    @refund.reconcile
    def find_refund(order_id: str, amount_usd: float) -> Reconciled:  # sync, without ctx
        return Reconciled(happened=False)

    model = recording_model(script())
    result = await make_agent(model, [refund]).resume(RUN)
    assert result.status == "completed"
    assert effects.keys == [f"{RUN}:1.1"]
    assert model.calls == 1
    assert [e.why for e in await store.load(RUN) if isinstance(e, ToolCallResumed)] == ["reconciled"]


@pytest.mark.parametrize("hook", ["none", "raises", "returns junk"])
async def test_an_interrupted_write_nobody_can_vouch_for_pauses_for_a_person(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any, hook: str
) -> None:
    await interrupted(store, clock)
    effects = Effects()
    refund = refund_tool(effects, effect="write")
    if hook == "raises":

        @refund.reconcile
        def broken(order_id: str, amount_usd: float) -> Reconciled:
            raise ConnectionError("payments API down")

    elif hook == "returns junk":
        refund.reconcile(lambda order_id, amount_usd: True)

    model = recording_model(script())
    result = await make_agent(model, [refund]).resume(RUN)
    assert (result.status, result.reason) == ("paused", "needs_attention")
    assert result.needs_attention == ("1.1",)
    assert "1.1 (refund)" in result.detail and f"keel resolve {RUN} CALL --result JSON" in result.detail
    assert effects.keys == [] and model.calls == 0
    state = replay(await store.load(RUN))
    assert state.status == "paused" and state.attention == ("1.1",)


async def test_resuming_a_paused_run_again_waits_and_leaves_the_run_free(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock)
    agent = make_agent(recording_model(script()), [refund_tool(Effects(), effect="write")])
    await agent.resume(RUN)
    length = len(await store.load(RUN))
    again = await agent.resume(RUN)
    assert (again.status, again.reason, again.needs_attention) == ("paused", "needs_attention", ("1.1",))
    assert len(await store.load(RUN)) == length
    lease = await store.acquire_lease(RUN, "operator:someone", 30.0)  # a person may act at once
    assert lease.owner == "operator:someone"


async def test_a_cancel_requested_while_the_driver_was_dead_is_honoured_before_any_recovery(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted(store, clock)
    await store.request_cancel(RUN, CancelRequest(by="ops", reason="customer withdrew", at=time.time()))
    effects = Effects()
    model = recording_model(script())
    result = await make_agent(model, [refund_tool(effects, effect="write", idempotent=True)]).resume(RUN)
    assert (result.status, result.reason) == ("cancelled", "cancelled")
    assert "cancelled by ops: customer withdrew" in result.detail
    assert effects.keys == [] and model.calls == 0  # neither the interrupted call nor the model ran
