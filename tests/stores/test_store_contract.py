"""The rules every store keeps, run against each backend (the ``store`` fixture is parametrised)."""

from __future__ import annotations

import pytest

from agentkeel import LeaseLost, ModelResponse, RunBusy, RunIdTaken, RunNotFound, Store, ToolCall, Usage
from agentkeel.core.events import (
    Event,
    ModelResponded,
    NoteWritten,
    RunEnded,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.state import RunState, replay
from agentkeel.stores.base import NO_SIGNALS, CancelRequest, RunRow, Signals

LEASE_S = 30.0


def first_event(run_id: str = "r1", *, at: float = 100.0, agent: str = "support", **changes: object) -> RunStarted:
    return RunStarted(at=at, run_id=run_id, agent=agent, task=f"task of {run_id}", model="scripted", **changes)  # type: ignore[arg-type]


async def create(store: Store, run_id: str = "r1", owner: str = "a", **changes: object) -> RunState:
    first = first_event(run_id, **changes)  # type: ignore[arg-type]
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner=owner, lease_s=LEASE_S)
    return state


async def append(store: Store, state: RunState, owner: str, *events: Event) -> Signals:
    after = state.last_seq
    for event in events:
        state.apply(event)
    return await store.append(state.run_id, owner, after, list(events), RunRow.of(state))


def note(n: int) -> NoteWritten:
    return NoteWritten(at=100.0 + n, key=f"k{n}", value=f"v{n}")


async def test_a_new_run_holds_its_first_event_and_row(store: Store) -> None:
    first = first_event(max_steps=5, tools=("lookup",), parent_id="p", agent_ref="app.py:agent")
    await store.create_run(first, RunRow.of(replay([first])), owner="a", lease_s=LEASE_S)
    assert await store.load("r1") == [first]
    [row] = await store.list_runs()
    assert row == RunRow.of(replay([first]))
    assert (row.status, row.steps, row.parent_id, row.agent_ref) == ("running", 0, "p", "app.py:agent")


async def test_a_run_id_is_created_once(store: Store) -> None:
    await create(store)
    with pytest.raises(RunIdTaken, match="already exists"):
        await create(store, owner="b")
    assert len(await store.load("r1")) == 1


async def test_appends_keep_order_and_dense_sequence_numbers(store: Store) -> None:
    state = await create(store)
    events: list[Event] = [note(n) for n in range(1, 8)]
    await append(store, state, "a", *events[:3])
    await append(store, state, "a", events[3])
    await append(store, state, "a", *events[4:])
    loaded = await store.load("r1")
    assert loaded[1:] == events
    assert replay(loaded).last_seq == state.last_seq == 8


async def test_an_append_updates_the_row(store: Store) -> None:
    state = await create(store)
    response = ModelResponse(text="done", usage=Usage(input_tokens=30, output_tokens=12))
    await append(
        store,
        state,
        "a",
        ModelResponded(at=101.0, step=1, response=response, cost_usd=0.5),
        RunEnded(at=102.0, status="completed", output="done"),
    )
    [row] = await store.list_runs()
    assert (row.status, row.steps, row.input_tokens, row.output_tokens, row.cost_usd, row.updated_at) == (
        "completed",
        1,
        30,
        12,
        0.5,
        102.0,
    )


async def test_the_journal_round_trips_every_detail(store: Store) -> None:
    state = await create(store)
    call = ToolCall(id="c1", name="lookup", arguments='{"order_id": "#12')
    events: list[Event] = [
        ModelResponded(at=101.0, step=1, response=ModelResponse(tool_calls=(call,), stop_reason="tool_use")),
        ToolCallStarted(
            at=101.0,
            call="1.1",
            tool_call_id="c1",
            name="lookup",
            arguments={"x": [1, {"y": None}]},
            idempotency_key="k",
        ),
    ]
    await append(store, state, "a", *events)
    assert (await store.load("r1"))[1:] == events


@pytest.mark.parametrize("case", ["other owner", "stale after_seq", "after_seq ahead", "released lease"])
async def test_an_append_that_does_not_fit_raises_lease_lost_and_writes_nothing(store: Store, case: str) -> None:
    state = await create(store)
    await append(store, state, "a", note(1), note(2))
    before_events = await store.load("r1")
    before_rows = await store.list_runs()
    owner, after = "a", state.last_seq
    if case == "other owner":
        owner = "b"
    elif case == "stale after_seq":
        after -= 1
    elif case == "after_seq ahead":
        after += 2
    else:
        await store.release_lease("r1", "a")
    doomed = replay(before_events)
    ended = RunEnded(at=200.0, status="failed", reason="x")
    doomed.apply(ended)
    with pytest.raises(LeaseLost, match="r1"):
        await store.append("r1", owner, after, [note(3), ended], RunRow.of(doomed))
    assert await store.load("r1") == before_events
    assert await store.list_runs() == before_rows


async def test_the_owner_renews_its_lease_by_acquiring_it_again(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    state = await create(store)
    clock.advance(LEASE_S - 1)
    await store.acquire_lease("r1", "a", LEASE_S)  # the driver's heartbeat
    clock.advance(LEASE_S - 1)  # past the first expiry, not past the renewed one
    with pytest.raises(RunBusy):
        await store.acquire_lease("r1", "b", LEASE_S)
    await append(store, state, "a", note(1))  # still the owner's run


async def test_an_expired_lease_nobody_took_still_lets_its_owner_append(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    state = await create(store)
    clock.advance(LEASE_S * 10)  # a long pause (a slow tool, a stalled process), and nobody took the run over
    await append(store, state, "a", note(1))
    assert len(await store.load("r1")) == 2


async def test_a_lease_belongs_to_one_owner_until_it_expires(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    await create(store)  # leased to "a" for 30 s
    clock.advance(LEASE_S - 0.5)
    with pytest.raises(RunBusy) as busy:
        await store.acquire_lease("r1", "b", LEASE_S)
    assert busy.value.owner == "a"
    assert busy.value.expires_in_s == pytest.approx(0.5)
    assert "run r1 is being driven by a" in str(busy.value)

    renewed = await store.acquire_lease("r1", "a", LEASE_S)  # the holder renews
    assert (renewed.owner, renewed.expires_at) == ("a", clock.now + LEASE_S)
    clock.advance(LEASE_S - 0.5)
    with pytest.raises(RunBusy):
        await store.acquire_lease("r1", "b", LEASE_S)

    clock.advance(1.0)  # expired: anyone may take the run over
    taken = await store.acquire_lease("r1", "b", 10.0)
    assert (taken.run_id, taken.owner, taken.lease_s, taken.expires_at) == ("r1", "b", 10.0, clock.now + 10.0)
    with pytest.raises(RunBusy):
        await store.acquire_lease("r1", "a", LEASE_S)


async def test_a_driver_whose_lease_was_taken_over_cannot_append(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    state = await create(store)
    clock.advance(LEASE_S + 1)
    await store.acquire_lease("r1", "b", LEASE_S)
    with pytest.raises(LeaseLost):
        await append(store, replay(await store.load("r1")), "a", note(1))
    await append(store, state, "b", note(1))
    assert len(await store.load("r1")) == 2


async def test_a_released_lease_is_free_at_once(store: Store) -> None:
    await create(store)
    await store.release_lease("r1", "b")  # not the holder: nothing happens
    with pytest.raises(RunBusy):
        await store.acquire_lease("r1", "b", LEASE_S)
    await store.release_lease("r1", "a")
    assert (await store.acquire_lease("r1", "b", LEASE_S)).owner == "b"


async def test_a_cancel_request_comes_back_with_the_next_append(store: Store) -> None:
    state = await create(store)
    assert await append(store, state, "a", note(1)) is NO_SIGNALS
    await store.request_cancel("r1", CancelRequest(by="ops", reason="customer hung up", at=123.0))
    await store.request_cancel("r1", CancelRequest(by="late", reason="second", at=124.0))  # the first one stands
    answer = await append(store, state, "a", note(2))
    assert answer == Signals(cancel=CancelRequest(by="ops", reason="customer hung up", at=123.0))
    assert await append(store, state, "a", note(3)) == answer


async def test_list_runs_puts_the_newest_first_and_filters(store: Store) -> None:
    for n, (agent, status) in enumerate(
        [("support", "completed"), ("billing", "running"), ("support", "running"), ("support", "failed")]
    ):
        state = await create(store, f"r{n}", at=100.0 + n, agent=agent)
        if status != "running":
            await append(store, state, "a", RunEnded(at=200.0 + n, status=status))  # type: ignore[arg-type]
    assert [r.run_id for r in await store.list_runs()] == ["r3", "r2", "r1", "r0"]
    assert [r.run_id for r in await store.list_runs(limit=2)] == ["r3", "r2"]
    assert [r.run_id for r in await store.list_runs(status="running")] == ["r2", "r1"]
    assert [r.run_id for r in await store.list_runs(agent="support")] == ["r3", "r2", "r0"]
    assert [r.run_id for r in await store.list_runs(agent="support", status="running")] == ["r2"]
    assert await store.list_runs(agent="nobody") == []


async def test_an_unknown_run_is_not_found(store: Store) -> None:
    with pytest.raises(RunNotFound, match="no run 'ghost'"):
        await store.load("ghost")
    with pytest.raises(RunNotFound):
        await store.acquire_lease("ghost", "a", LEASE_S)
    with pytest.raises(RunNotFound):
        await store.request_cancel("ghost", CancelRequest(by="ops", reason="x", at=1.0))
    await store.release_lease("ghost", "a")  # giving up what one does not hold is harmless


async def test_an_append_to_an_unknown_run_fails_and_creates_nothing(store: Store) -> None:
    first = first_event("ghost")
    with pytest.raises((LeaseLost, RunNotFound)):
        await store.append("ghost", "a", 0, [first], RunRow.of(replay([first])))
    with pytest.raises(RunNotFound):
        await store.load("ghost")


async def test_the_store_names_where_it_lives(store: Store) -> None:
    assert store.url.startswith(("memory://", "sqlite:///", "postgresql://"))


async def test_renewing_extends_only_the_owner_s_lease_and_never_recreates_one(store: Store, clock) -> None:  # type: ignore[no-untyped-def]
    await create(store)  # leased to "a"
    clock.advance(LEASE_S - 1)
    assert await store.renew_lease("r1", "a") is True
    clock.advance(LEASE_S - 1)  # past the first expiry, inside the renewed one
    with pytest.raises(RunBusy):
        await store.acquire_lease("r1", "b", LEASE_S)
    assert await store.renew_lease("r1", "b") is False  # not b's to renew
    await store.release_lease("r1", "a")
    assert await store.renew_lease("r1", "a") is False  # released: a late heartbeat must not take it back
    lease = await store.acquire_lease("r1", "b", LEASE_S)
    assert lease.owner == "b"


# -- windows and tool outcomes (keel stats) -------------------------------------------------------------------------


async def test_list_runs_since_keeps_the_runs_created_then_or_later(store: Store) -> None:
    for n, agent in enumerate(["support", "billing", "support", "support"]):
        await create(store, f"r{n}", at=100.0 + n, agent=agent)
    assert [r.run_id for r in await store.list_runs(since=101.0)] == ["r3", "r2", "r1"]  # at the bound: in
    assert [r.run_id for r in await store.list_runs(since=101.5)] == ["r3", "r2"]
    assert [r.run_id for r in await store.list_runs(since=101.0, agent="support")] == ["r3", "r2"]
    assert [r.run_id for r in await store.list_runs(since=101.0, limit=1)] == ["r3"]
    assert await store.list_runs(since=104.0) == []
    assert len(await store.list_runs(since=None)) == 4


async def test_list_runs_without_a_limit_lists_them_all(store: Store) -> None:
    for n in range(55):  # more than the default limit of 50
        await create(store, f"r{n:02}", at=100.0 + n)
    assert len(await store.list_runs()) == 50
    listed = await store.list_runs(limit=None)
    assert [r.run_id for r in listed] == [f"r{n:02}" for n in range(54, -1, -1)]


def finished(call: str, name: str, *, error: str = "", at: float = 101.0) -> ToolCallFinished:
    """A finished call: with ``error``, a failure of that kind; else a result with nested JSON and non-ASCII text."""
    if error:
        failure = ToolFailure(kind=error, message=f"{name} failed")  # type: ignore[arg-type]
        return ToolCallFinished(at=at, call=call, tool_call_id=f"c{call}", name=name, content="no", error=failure)
    return ToolCallFinished(
        at=at, call=call, tool_call_id=f"c{call}", name=name, content="ok, café", result={"rows": [1, {"x": None}]}
    )


def started(call: str, name: str) -> ToolCallStarted:
    return ToolCallStarted(at=101.0, call=call, tool_call_id=f"c{call}", name=name, arguments={}, idempotency_key=call)


async def test_tool_outcomes_count_finished_calls_and_failures_per_run_and_tool(store: Store) -> None:
    one = await create(store, "r1", at=100.0)
    await append(
        store,
        one,
        "a",
        started("1.1", "lookup"),
        finished("1.1", "lookup"),
        started("1.2", "lookup"),
        finished("1.2", "lookup", error="timeout"),
        finished("1.3", "refund", error="unknown_tool"),  # rejected before it started: still a finished call
        started("2.1", "refund"),
        finished("2.1", "refund"),
        started("2.2", "lookup"),  # interrupted: started, never finished, not an outcome
        note(3),
    )
    two = await create(store, "r2", at=105.0, agent="billing", parent_id="r1")
    await append(store, two, "a", finished("1.1", "lookup", error="tool_error"), finished("1.2", "charge"))
    await create(store, "r3", at=106.0)  # no tool call at all
    outcomes = {(o.run_id, o.tool): (o.calls, o.failures) for o in await store.tool_outcomes()}
    assert outcomes == {
        ("r1", "lookup"): (2, 1),
        ("r1", "refund"): (2, 1),
        ("r2", "lookup"): (1, 1),
        ("r2", "charge"): (1, 0),
    }
    assert {(o.run_id, o.tool) for o in await store.tool_outcomes(since=105.0)} == {("r2", "lookup"), ("r2", "charge")}
    assert {(o.run_id, o.tool) for o in await store.tool_outcomes(agent="support")} == {
        ("r1", "lookup"),
        ("r1", "refund"),
    }
    assert await store.tool_outcomes(since=105.0, agent="support") == []
    assert await store.tool_outcomes(since=200.0) == []
    assert all(isinstance(o.calls, int) and isinstance(o.failures, int) for o in await store.tool_outcomes())
