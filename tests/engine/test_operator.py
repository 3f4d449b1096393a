"""A person acts on a run from outside: resolves an interrupted call, cancels a run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ModelResponse,
    ResolveError,
    RunBusy,
    RunNotFound,
    Store,
    ToolCall,
    ToolContext,
    cancel_run,
    reply,
    resolve_call,
    tool,
)
from agentkeel.core.events import (
    CallRetryAuthorized,
    Event,
    ModelResponded,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallStarted,
)
from agentkeel.core.state import replay
from agentkeel.engine.operator import SKIPPED_MESSAGE
from agentkeel.stores.base import RunRow

MakeAgent = Callable[..., Agent]
RUN = "r1"


async def interrupted_refunds(store: Store, clock: Any, *, count: int = 1, at: float | None = None) -> None:
    """A journal whose driver died while ``count`` refund calls of step 1 were running; its lease has expired."""
    now = time.time() if at is None else at
    first = RunStarted(at=now, run_id=RUN, agent="test", task="Refund #1234", model="scripted", timeout_s=60.0)
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner="dead-driver", lease_s=30.0)
    tool_calls = tuple(ToolCall(id=f"call_1_{n}", name="refund", arguments={"amount": n}) for n in range(1, count + 1))
    events: list[Event] = [ModelResponded(at=now, step=1, response=ModelResponse(tool_calls=tool_calls))]
    events += [
        ToolCallStarted(
            at=now,
            call=f"1.{n}",
            tool_call_id=f"call_1_{n}",
            name="refund",
            arguments={"amount": n},
            idempotency_key=f"{RUN}:1.{n}",
        )
        for n in range(1, count + 1)
    ]
    for event in events:
        state.apply(event)
    await store.append(RUN, "dead-driver", 1, events, RunRow.of(state))
    clock.advance(31.0)


def refund_tool(ran: list[str]) -> Any:
    @tool(effect="write")
    def refund(ctx: ToolContext, amount: int) -> dict[str, Any]:
        """Refund (not idempotent: a crash inside it needs a person)."""
        ran.append(ctx.idempotency_key)
        return {"refunded": amount}

    return refund


async def paused_run(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any, **kw: Any
) -> tuple[Any, Any, list[str]]:
    await interrupted_refunds(store, clock, **kw)
    ran: list[str] = []
    model = recording_model([reply("MUST NOT BE REQUESTED"), reply("Done.")])
    agent = make_agent(model, [refund_tool(ran)])
    result = await agent.resume(RUN)
    assert (result.status, result.reason) == ("paused", "needs_attention")
    return agent, model, ran


# -- resolve_call ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("decision", "result", "runs", "answer", "is_error"),
    [
        ("result", {"refund_id": "rf-9"}, 0, '{"refund_id":"rf-9"}', False),
        ("skip", None, 0, "refund was interrupted and an operator chose to skip it", True),
        ("retry", None, 1, '{"refunded":1}', False),
    ],
)
async def test_a_decision_lets_the_run_complete_and_the_tool_runs_accordingly(
    make_agent: MakeAgent,
    recording_model: Any,
    store: Store,
    clock: Any,
    decision: Any,
    result: Any,
    runs: int,
    answer: str,
    is_error: bool,
) -> None:
    agent, model, ran = await paused_run(make_agent, recording_model, store, clock)

    state = await resolve_call(store, RUN, "1.1", decision, result=result, by="ada")
    assert state.attention == ()
    assert state.status == "paused"  # a decision records; a resume drives
    assert ran == []

    final = await agent.resume(RUN)
    assert (final.status, final.output) == ("completed", "Done.")
    assert len(ran) == runs
    if runs:
        assert ran == [f"{RUN}:1.1"]  # the retry keeps the call's idempotency key
    assert model.calls == 1
    message = model.requests[0].messages[-1]
    assert answer in message.content  # type: ignore[union-attr]
    assert message.is_error is is_error  # type: ignore[union-attr]

    journal = await store.load(RUN)
    if decision == "retry":
        assert [e.by for e in journal if isinstance(e, CallRetryAuthorized)] == ["ada"]
        assert [e.why for e in journal if isinstance(e, ToolCallResumed)] == ["authorized"]
    else:
        [finished] = [e for e in journal if isinstance(e, ToolCallFinished)]
        assert finished.resolved_by == "ada"


async def test_each_waiting_call_needs_its_decision(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    agent, model, ran = await paused_run(make_agent, recording_model, store, clock, count=2)
    await resolve_call(store, RUN, "1.2", "skip", by="ada")
    still = await agent.resume(RUN)
    assert (still.status, still.needs_attention) == ("paused", ("1.1",))
    assert model.calls == 0
    await resolve_call(store, RUN, "1.1", "retry", by="ada")
    assert (await agent.resume(RUN)).status == "completed"
    assert ran == [f"{RUN}:1.1"]


async def test_an_authorised_retry_covers_one_attempt(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    agent, model, ran = await paused_run(make_agent, recording_model, store, clock)
    await resolve_call(store, RUN, "1.1", "retry", by="ada")
    # The process that took the retry up died during the attempt, after journaling it.
    state = replay(await store.load(RUN))
    events: list[Event] = [
        RunResumed(at=time.time(), owner="doomed"),
        ToolCallResumed(at=time.time(), call="1.1", attempt=1, why="authorized"),
    ]
    after = state.last_seq
    for event in events:
        state.apply(event)
    await store.acquire_lease(RUN, "doomed", 30.0)
    await store.append(RUN, "doomed", after, events, RunRow.of(state))
    clock.advance(31.0)

    again = await agent.resume(RUN)
    assert (again.status, again.reason, again.needs_attention) == ("paused", "needs_attention", ("1.1",))
    assert ran == [] and model.calls == 0


async def test_resolving_a_call_that_is_not_waiting_is_refused(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    agent, _, _ = await paused_run(make_agent, recording_model, store, clock)
    with pytest.raises(ResolveError, match=r"call '9.9' is not waiting for a decision \(calls waiting: 1.1"):
        await resolve_call(store, RUN, "9.9", "skip", by="ada")
    await resolve_call(store, RUN, "1.1", "skip", by="ada")
    with pytest.raises(ResolveError, match="calls waiting: none; the run is paused\\(needs_attention\\)"):
        await resolve_call(store, RUN, "1.1", "skip", by="ada")
    await agent.resume(RUN)
    with pytest.raises(ResolveError, match="the run is completed"):
        await resolve_call(store, RUN, "1.1", "retry", by="ada")


async def test_a_result_must_be_json_and_an_unknown_decision_is_refused(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await paused_run(make_agent, recording_model, store, clock)
    with pytest.raises(ResolveError, match="the result must be JSON"):
        await resolve_call(store, RUN, "1.1", "result", result={"when": object()}, by="ada")
    with pytest.raises(ResolveError, match="unknown decision 'approve'"):
        await resolve_call(store, RUN, "1.1", "approve", by="ada")  # type: ignore[arg-type]
    assert replay(await store.load(RUN)).attention == ("1.1",)  # nothing was recorded


async def test_resolving_while_a_driver_holds_the_run_is_refused(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await paused_run(make_agent, recording_model, store, clock)
    await store.acquire_lease(RUN, "some-driver", 30.0)
    with pytest.raises(RunBusy):
        await resolve_call(store, RUN, "1.1", "skip", by="ada")


async def test_resolving_an_unknown_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await resolve_call(store, "ghost", "1.1", "skip", by="ada")


async def test_time_paused_for_a_person_does_not_count_against_the_timeout(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    # Driven for a moment two hours ago, paused for a person then, resolved now; the limit is 60 s of driving.
    two_hours_ago = time.time() - 7200
    await interrupted_refunds(store, clock, at=two_hours_ago)
    state = replay(await store.load(RUN))
    pause = RunPaused(at=two_hours_ago + 1, reason="needs_attention", detail="decide", calls=("1.1",))
    state.apply(pause)
    await store.acquire_lease(RUN, "old-driver", 30.0)
    await store.append(RUN, "old-driver", state.last_seq - 1, [pause], RunRow.of(state))
    await store.release_lease(RUN, "old-driver")

    await resolve_call(store, RUN, "1.1", "result", result={"ok": True}, by="ada")
    ran: list[str] = []
    final = await make_agent(recording_model([reply("x"), reply("Done.")]), [refund_tool(ran)]).resume(RUN)
    assert (final.status, final.reason, final.output) == ("completed", "", "Done.")
    assert final.duration_s < 60


# -- cancel_run -----------------------------------------------------------------------------------------------------


async def test_cancelling_a_paused_run_ends_it_at_once(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    agent, model, ran = await paused_run(make_agent, recording_model, store, clock)
    state = await cancel_run(store, RUN, by="ada", reason="refunded by hand")
    assert (state.status, state.reason, state.detail) == (
        "cancelled",
        "cancelled",
        "cancelled by ada: refunded by hand",
    )
    ended = (await store.load(RUN))[-1]
    assert isinstance(ended, RunEnded) and ended.by == "ada"
    again = await agent.resume(RUN)
    assert (again.status, again.needs_attention) == ("cancelled", ())
    assert ran == [] and model.calls == 0
    with pytest.raises(ResolveError, match="calls waiting: none; the run is cancelled"):
        await resolve_call(store, RUN, "1.1", "skip", by="ada")


async def test_cancelling_an_idle_run_ends_it_and_a_resume_does_nothing(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    await interrupted_refunds(store, clock)  # a crashed driver, lease expired: nobody drives it
    state = await cancel_run(store, RUN, by="ops", reason="stale")
    assert state.status == "cancelled"
    ran: list[str] = []
    model = recording_model([reply("x")])
    result = await make_agent(model, [refund_tool(ran)]).resume(RUN)
    assert (result.status, result.reason) == ("cancelled", "cancelled")
    assert ran == [] and model.calls == 0


async def test_cancelling_an_ended_run_changes_nothing(make_agent: MakeAgent, store: Store) -> None:
    result = await make_agent(["done"]).run("go")
    journal = await store.load(result.run_id)
    state = await cancel_run(store, result.run_id, by="ops", reason="late")
    assert state.status == "completed"
    assert await store.load(result.run_id) == journal


async def test_cancelling_an_unknown_run_raises_run_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound):
        await cancel_run(store, "ghost", by="ops", reason="x")


def test_the_skip_message_tells_the_model_not_to_assume() -> None:
    text = SKIPPED_MESSAGE.format(tool="refund")
    assert "may not have taken effect" in text and "check before you call it again" in text
    assert json.dumps(text)
