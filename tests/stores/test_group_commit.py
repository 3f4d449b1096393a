"""Group commit on SQLite: concurrent runs share transactions; one write's failure undoes that write only."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agentkeel import (
    Agent,
    LeaseLost,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    SQLiteStore,
    StoreError,
    call,
    reply,
    tool,
)
from agentkeel.core.events import NoteWritten, RunStarted
from agentkeel.core.state import RunState, replay
from agentkeel.stores.base import NO_SIGNALS, RunRow
from loop_turns import longest_turn


async def create(store: SQLiteStore, run_id: str, owner: str) -> RunState:
    first = RunStarted(at=1.0, run_id=run_id, agent="a", task="t", model="scripted")
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner=owner, lease_s=30.0)
    return state


@tool
async def lookup(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "shipped"}


TURNS = [call("lookup", order_id="#0001"), call("lookup", order_id="#0002"), reply("done")]


async def yielding_script(request: ModelRequest) -> ModelResponse:
    """Each turn lets the other runs go first (as a model's latency would), so that runs overlap."""
    await asyncio.sleep(0)
    return TURNS[sum(1 for message in request.messages if message.kind == "assistant")]


def note(n: int) -> NoteWritten:
    return NoteWritten(at=2.0 + n, key="k", value=str(n))


async def test_concurrent_runs_share_commits_and_each_journal_is_whole(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    agent = Agent(name="many", model=ScriptedModel(yielding_script), tools=[lookup], store=store)
    results = await asyncio.gather(*(agent.run(f"task {n}") for n in range(40)))
    assert {r.status for r in results} == {"completed"}
    writes, batches = store._group.writes, store._group.batches
    assert batches < writes / 4, f"{writes} writes in {batches} transactions: no group commit"
    for result in results:  # every run's journal is complete and in order
        state = replay(await store.load(result.run_id))
        assert (state.status, state.steps_completed, state.tool_calls) == ("completed", 3, 2)
    await store.close()


async def test_a_single_run_commits_each_write_at_once(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    agent = Agent(name="one", model=ScriptedModel([call("lookup", order_id="#0001"), reply("done")]), tools=[lookup])
    result = await agent.replace(store=store).run("task")
    assert result.status == "completed"
    assert store._group.batches == store._group.writes  # alone: nothing to wait for
    await store.close()


async def test_a_fenced_write_fails_alone_and_the_batch_commits_the_rest(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    first: RunState = await create(store, "r1", "a")
    second: RunState = await create(store, "r2", "b")

    async def append(state: RunState, owner: str) -> None:
        after = state.last_seq
        event = note(after)
        state.apply(event)
        await store.append(state.run_id, owner, after, [event], RunRow.of(state))

    batches = store._group.batches
    outcomes = await asyncio.gather(append(first, "a"), append(second, "intruder"), return_exceptions=True)
    assert outcomes[0] is None and isinstance(outcomes[1], LeaseLost)
    assert store._group.batches == batches + 1  # both writes were in one transaction
    assert len(await store.load("r1")) == 2  # the good write is durable
    assert len(await store.load("r2")) == 1  # the fenced one left nothing
    reopened = SQLiteStore(tmp_path / "keel.db")
    assert len(await reopened.load("r1")) == 2
    await reopened.close()
    await store.close()


@pytest.mark.parametrize("runs", [2, 25])
async def test_leases_and_cancels_go_through_the_same_commits(tmp_path: Path, runs: int) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    states = [await create(store, f"r{n}", f"o{n}") for n in range(runs)]
    leases = await asyncio.gather(*(store.acquire_lease(s.run_id, f"o{n}", 30.0) for n, s in enumerate(states)))
    assert [lease.owner for lease in leases] == [f"o{n}" for n in range(runs)]
    await asyncio.gather(*(store.release_lease(s.run_id, f"o{n}") for n, s in enumerate(states)))
    others = await asyncio.gather(*(store.acquire_lease(s.run_id, "other", 30.0) for s in states))
    assert {lease.owner for lease in others} == {"other"}
    await store.close()


async def test_new_runs_share_a_transaction_and_a_taken_id_is_refused_alone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    await create(store, "taken", "a")
    await create(store, "other", "a")  # two runs leased: the store is no longer alone
    batches = store._group.batches
    outcomes = await asyncio.gather(
        *(create(store, run_id, "b") for run_id in ("n1", "taken", "n2", "n2")), return_exceptions=True
    )
    assert [type(outcome).__name__ for outcome in outcomes] == ["RunState", "RunIdTaken", "RunState", "RunIdTaken"]
    assert store._group.batches == batches + 1  # one transaction for all four
    assert len(await store.load("n1")) == len(await store.load("n2")) == 1
    assert (await store.load("taken"))[0].run_id == "taken"
    await store.close()


async def test_two_appends_of_one_run_in_a_batch_chain_and_a_missing_run_is_named(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db")
    await create(store, "r1", "a")
    await create(store, "r2", "b")
    one, two = note(1), note(2)
    outcomes = await asyncio.gather(
        store.append("r1", "a", 1, [one], None),
        store.append("r1", "a", 2, [two], None),  # follows the first in the same transaction
        store.append("r1", "a", 2, [two], None),  # a stale journal length: refused
        store.append("nope", "a", 0, [one], None),
        return_exceptions=True,
    )
    assert outcomes[0] is outcomes[1] is NO_SIGNALS  # no cancel request, no switch ever set
    assert isinstance(outcomes[2], LeaseLost)
    assert type(outcomes[3]).__name__ == "RunNotFound"
    assert [e.kind for e in await store.load("r1")] == ["run_started", "note_written", "note_written"]
    await store.close()


async def test_a_write_waits_for_another_process_s_lock_while_the_loop_runs_on(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db", busy_timeout_s=5.0)
    state = await create(store, "r1", "me")
    other = sqlite3.connect(tmp_path / "keel.db", isolation_level=None)  # another process, as far as SQLite knows
    other.execute("BEGIN IMMEDIATE")
    append = asyncio.create_task(store.append("r1", "me", state.last_seq, [note(1)], None))
    longest = await longest_turn()  # the loop keeps turning: the write waits on a timer, not in the driver
    assert not append.done()
    assert longest < 2.5  # a loop stalled in the driver's busy wait would show a turn of the whole 5 s
    other.execute("COMMIT")
    await append
    assert [e.kind for e in await store.load("r1")] == ["run_started", "note_written"]
    other.close()
    await store.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_write_and_the_store_goes_on(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "keel.db", busy_timeout_s=0.05)
    state = await create(store, "r1", "me")
    other = sqlite3.connect(tmp_path / "keel.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"another process held the store's write lock for 0\.05 s"):
        await store.append("r1", "me", state.last_seq, [note(1)], None)
    other.execute("COMMIT")
    await store.append("r1", "me", state.last_seq, [note(2)], None)  # nothing of the failed write was stored
    assert [e.value for e in await store.load("r1") if isinstance(e, NoteWritten)] == ["2"]
    other.close()
    await store.close()


@pytest.mark.parametrize("seconds", [0.0, -1.0, float("inf"), float("nan")])
def test_a_busy_timeout_that_is_not_a_positive_time_is_refused(tmp_path: Path, seconds: float) -> None:
    with pytest.raises(StoreError, match=r"busy_timeout_s=.*: give a number of seconds above 0"):
        SQLiteStore(tmp_path / "keel.db", busy_timeout_s=seconds)
    assert not (tmp_path / "keel.db").exists()
