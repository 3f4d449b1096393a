"""Kill switches in the store, on every backend: set, lifted and listed; the version every append reads; the cancel
requests a switch on an agent writes; new runs refused inside their create; another process's view; migration."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
from test_store_contract import append, create, note

import postgres_server
from agentkeel import ConfigError, Killed, RunNotFound, SQLiteStore, Store, StoreError
from agentkeel.core.events import RunEnded
from agentkeel.stores import migrations as sqlite_migrations
from agentkeel.stores import postgres_migrations
from agentkeel.stores.base import NO_SIGNALS, CancelRequest, Signals, Switch
from agentkeel.stores.postgres import PostgresStore


def switch(scope: str, target: str = "", *, by: str = "ops@desk", reason: str = "fraud", at: float = 50.0) -> Switch:
    return Switch(scope=scope, target=target, by=by, reason=reason, at=at)  # type: ignore[arg-type]


@asynccontextmanager
async def another_process(store: Store) -> AsyncIterator[Store]:
    """A second store object on the same SQLite file or PostgreSQL schema: what another process sees."""
    if isinstance(store, SQLiteStore):
        other: Store = SQLiteStore(store.path)
    elif isinstance(store, PostgresStore):
        assert store.schema is not None
        other = PostgresStore(postgres_server.schema_url(store.schema))
    else:
        raise TypeError(f"{type(store).__name__} is not shared between processes")
    try:
        yield other
    finally:
        await other.close()


# -- set, lift, list ----------------------------------------------------------------------------------------------


async def test_a_new_store_has_no_switches_and_version_zero(store: Store) -> None:
    assert await store.switches() == (0, [])


async def test_switches_are_set_listed_oldest_first_and_lifted(store: Store) -> None:
    refund = switch("tool", "refund", at=60.0)
    support = switch("agent", "support", by="lead", reason="bad prompt", at=55.0)
    everything = switch("all", at=70.0)
    assert await store.set_switch(refund) == 1
    assert await store.set_switch(support) == 2
    assert await store.set_switch(everything) == 3
    assert await store.switches() == (3, [support, refund, everything])

    assert await store.clear_switch("agent", "support") is True
    assert await store.switches() == (4, [refund, everything])
    assert await store.clear_switch("agent", "support") is False  # nothing to lift: the version stays
    assert await store.clear_switch("tool", "lookup") is False
    assert await store.clear_switch("all", "") is True
    assert await store.switches() == (5, [refund])


async def test_setting_a_switch_again_replaces_it_and_moves_the_version(store: Store) -> None:
    await store.set_switch(switch("tool", "refund", reason="fraud"))
    again = switch("tool", "refund", by="cfo", reason="audit", at=80.0)
    assert await store.set_switch(again) == 2
    assert await store.switches() == (2, [again])


async def test_a_tool_switch_and_an_agent_switch_of_one_name_are_apart(store: Store) -> None:
    tool, agent = switch("tool", "support"), switch("agent", "support", at=51.0)
    await store.set_switch(tool)
    await store.set_switch(agent)
    assert await store.clear_switch("tool", "support")
    assert (await store.switches())[1] == [agent]


def test_a_switch_is_one_of_three_scopes_and_all_takes_no_name() -> None:
    with pytest.raises(ConfigError, match="scope is tool, agent or all, not 'run'"):
        switch("run", "r1")
    with pytest.raises(ConfigError, match="on all takes no name: got 'support'"):
        switch("all", "support")
    with pytest.raises(ConfigError, match="on tool needs a name"):
        switch("tool", "")


# -- what appends learn -------------------------------------------------------------------------------------------


async def test_an_append_answers_with_the_switch_version(store: Store) -> None:
    state = await create(store)
    assert await append(store, state, "a", note(1)) is NO_SIGNALS
    await store.set_switch(switch("tool", "refund"))
    assert await append(store, state, "a", note(2)) == Signals(switches=1)  # a tool switch cancels nothing
    await store.clear_switch("tool", "refund")
    assert await append(store, state, "a", note(3)) == Signals(switches=2)
    assert await append(store, state, "a", note(4)) is await append(store, state, "a", note(5))  # shared, not new


async def test_a_switch_on_an_agent_asks_its_live_runs_to_stop(store: Store) -> None:
    mine, other = await create(store, "r1", agent="support"), await create(store, "r2", agent="billing")
    ended = await create(store, "r3", agent="support")
    await append(store, ended, "a", RunEnded(at=101.0, status="completed", output="done"))

    version = await store.set_switch(switch("agent", "support", by="ops@desk", reason="bad prompt", at=60.0))

    stop = CancelRequest(by="ops@desk", reason="bad prompt", at=60.0)
    assert await append(store, mine, "a", note(1)) == Signals(cancel=stop, switches=version)
    assert await append(store, other, "a", note(1)) == Signals(switches=version)
    after_end = await store.append("r3", "a", ended.last_seq, [note(1)], None)  # the store lets it: a probe
    assert after_end.cancel is None  # it had ended: nothing to stop


async def test_a_switch_on_everything_asks_every_live_run_to_stop_and_an_earlier_request_stands(store: Store) -> None:
    first, second = await create(store, "r1", agent="support"), await create(store, "r2", agent="billing")
    earlier = CancelRequest(by="ana", reason="customer hung up", at=40.0)
    await store.request_cancel("r1", earlier)

    version = await store.set_switch(switch("all", by="sre", reason="provider outage", at=60.0))

    assert await append(store, first, "a", note(1)) == Signals(cancel=earlier, switches=version)
    assert await append(store, second, "a", note(1)) == Signals(
        cancel=CancelRequest(by="sre", reason="provider outage", at=60.0), switches=version
    )


# -- new runs refused ---------------------------------------------------------------------------------------------


async def test_a_killed_agent_starts_no_run_and_the_error_says_who_why_and_how_to_undo(store: Store) -> None:
    await store.set_switch(switch("agent", "support", by="ops@desk", reason="fraud investigation", at=3600.0))
    with pytest.raises(Killed) as refused:
        await create(store, "r1", agent="support")
    assert str(refused.value) == (
        "agent 'support' is disabled by ops@desk since 1970-01-01 01:00 UTC (fraud investigation), so no new run "
        "of 'support' starts; `keel kill --clear --agent support` enables it again"
    )
    assert refused.value.switch.reason == "fraud investigation"
    assert await store.list_runs() == []
    await create(store, "r2", agent="billing")  # other agents start
    await store.clear_switch("agent", "support")
    await create(store, "r1", agent="support")  # and so does this one, once the switch is lifted
    assert sorted(row.run_id for row in await store.list_runs()) == ["r1", "r2"]


async def test_a_switch_on_everything_refuses_every_new_run_and_a_tool_switch_none(store: Store) -> None:
    await store.set_switch(switch("tool", "support"))  # a tool that happens to share the agent's name
    await create(store, "r1", agent="support")
    await store.set_switch(switch("all", by="sre", reason="outage"))
    with pytest.raises(Killed, match=r"every agent is disabled by sre since .* \(outage\).*keel kill --clear --all"):
        await create(store, "r2", agent="billing")
    with pytest.raises(RunNotFound):
        await store.load("r2")


async def test_of_runs_created_together_only_the_killed_agents_are_refused(store: Store) -> None:
    await store.set_switch(switch("agent", "support"))
    await create(store, "taken", agent="billing")
    await create(store, "other", agent="billing")  # two runs leased: the SQLite store is no longer alone
    before = batches(store)
    outcomes = await asyncio.gather(
        *(create(store, f"s{n}", agent="support") for n in range(3)),
        *(create(store, f"b{n}", agent="billing") for n in range(3)),
        return_exceptions=True,
    )
    assert [type(outcome).__name__ for outcome in outcomes] == ["Killed"] * 3 + ["RunState"] * 3
    if before is not None:
        assert batches(store) == before + 1  # one transaction (one statement on PostgreSQL) for all six
    assert sorted(row.run_id for row in await store.list_runs()) == ["b0", "b1", "b2", "other", "taken"]

    outcomes = await asyncio.gather(  # a taken id fails a PostgreSQL batch: then each run is created alone
        create(store, "taken", agent="support"),
        create(store, "s9", agent="support"),
        create(store, "b9", agent="billing"),
        return_exceptions=True,
    )
    assert isinstance(outcomes[0], (Killed, StoreError)) and isinstance(outcomes[1], Killed)
    assert type(outcomes[2]).__name__ == "RunState"
    assert [event.agent for event in await store.load("taken")] == ["billing"]  # type: ignore[attr-defined]


def batches(store: Store) -> int | None:
    """How many batches of writes the store committed (None: it does not batch)."""
    if isinstance(store, PostgresStore):
        return store._creates.batches
    if isinstance(store, SQLiteStore):
        return store._group.batches
    return None


# -- another process ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("store", ["sqlite", "postgres"], indirect=True)  # a memory store lives in one process
async def test_a_switch_set_in_one_process_reaches_the_others(store: Store) -> None:
    state = await create(store, "r1", agent="support")
    async with another_process(store) as other:
        version = await other.set_switch(switch("agent", "support", reason="from elsewhere"))
        assert await store.switches() == (version, [switch("agent", "support", reason="from elsewhere")])
        answer = await append(store, state, "a", note(1))
        assert answer.switches == version and answer.cancel is not None
        with pytest.raises(Killed):
            await create(store, "r2", agent="support")
        await store.clear_switch("agent", "support")
        assert await other.switches() == (version + 1, [])
        await create(other, "r2", agent="support")


# -- migration ----------------------------------------------------------------------------------------------------


async def test_an_sqlite_store_of_schema_1_migrates_once_and_keeps_its_runs(sqlite_path: Path) -> None:
    store = SQLiteStore(sqlite_path)
    await create(store, "r1")
    await store.close()
    with sqlite3.connect(sqlite_path) as db:  # back to schema 1, the run kept
        db.execute("DROP TABLE keel_switches")
        db.execute("DROP TABLE keel_switch_version")
        db.execute("UPDATE keel_meta SET value = '1' WHERE key = 'schema_version'")
    store = SQLiteStore(sqlite_path)
    try:
        assert store.schema_version == len(sqlite_migrations.MIGRATIONS) == 2
        assert await store.switches() == (0, [])
        assert [event.kind for event in await store.load("r1")] == ["run_started"]
        await store.set_switch(switch("tool", "refund"))
    finally:
        await store.close()
    again = SQLiteStore(sqlite_path)  # reopening applies nothing: the switch is still there
    try:
        assert await again.switches() == (1, [switch("tool", "refund")])
    finally:
        await again.close()


async def test_a_postgres_schema_of_version_1_migrates_once() -> None:
    with postgres_server.fresh_schema() as schema:
        url = postgres_server.schema_url(schema)
        store = PostgresStore(url)
        await create(store, "r1")
        await store.close()
        with psycopg.connect(postgres_server.SERVER_URL, autocommit=True) as conn:  # back to schema 1, the run kept
            conn.execute(f"DROP TABLE {schema}.keel_switches, {schema}.keel_switch_version")  # type: ignore[arg-type]
            conn.execute(f"DELETE FROM {schema}.keel_migrations WHERE version = 2")  # type: ignore[arg-type]
        store = PostgresStore(url)
        try:
            assert await store.schema_version() == len(postgres_migrations.MIGRATIONS) == 2
            assert await store.switches() == (0, [])
            assert [event.kind for event in await store.load("r1")] == ["run_started"]
        finally:
            await store.close()
