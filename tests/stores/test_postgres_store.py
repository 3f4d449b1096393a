"""What only the PostgreSQL store has to get right: its URL, its schema and migrations (once, however many processes
start together), appends and takeovers that race, and its connections across event loops.

The rules every store keeps run on PostgreSQL through the ``store`` fixture (the contract suite, the engine tests)
and the crash harness. Tests that need the server skip without one, or fail under ``CI=true`` (``postgres_server``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import postgres_server
from agentkeel import (
    Agent,
    ConfigError,
    LeaseLost,
    ModelRequest,
    ModelResponse,
    RunBusy,
    ScriptedModel,
    SQLiteStore,
    StoreError,
    call,
    open_store,
    reply,
    tool,
)
from agentkeel.core.events import NoteWritten, RunStarted
from agentkeel.core.state import RunState, replay
from agentkeel.stores import migrations as sqlite_migrations
from agentkeel.stores import postgres_migrations
from agentkeel.stores.base import CancelRequest, RunRow
from agentkeel.stores.postgres import PostgresStore


@pytest.fixture
def schema() -> Iterator[str]:
    """A schema nobody uses yet on the test server; dropped afterwards."""
    with postgres_server.fresh_schema() as name:
        yield name


@pytest.fixture
def url(schema: str) -> str:
    return postgres_server.schema_url(schema)


def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the test server in a connection of its own (autocommit)."""
    with psycopg.connect(postgres_server.SERVER_URL, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


async def create(store: PostgresStore, run_id: str = "r1", owner: str = "a", task: str = "t") -> RunState:
    first = RunStarted(at=100.0, run_id=run_id, agent="support", task=task, model="scripted")
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner=owner, lease_s=30.0)
    return state


def note(n: int) -> NoteWritten:
    return NoteWritten(at=100.0 + n, key=f"k{n}", value=f"v{n}")


# -- URLs: no server needed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_open_store_names_a_postgres_store_and_connects_only_when_used(scheme: str) -> None:
    store = open_store(f"{scheme}://keel:s3cret@127.0.0.1:1/db?schema=keel&pool_max=3&sslmode=disable")
    assert isinstance(store, PostgresStore)
    assert (store.schema, store.pool_max) == ("keel", 3)
    assert store.url == f"{scheme}://keel:***@127.0.0.1:1/db?schema=keel&pool_max=3&sslmode=disable"
    assert "s3cret" not in store.url


def test_a_password_in_the_query_is_masked_too() -> None:
    store = PostgresStore("postgresql://127.0.0.1/db?user=keel&password=s3cret")
    assert store.url == "postgresql://127.0.0.1/db?user=keel&password=***"
    assert (store.schema, store.pool_max) == (None, 10)


@pytest.mark.parametrize(
    ("query_string", "message"),
    [
        ("?schema=Keel-Runs", "schema 'Keel-Runs' must be a lowercase name of letters, digits and underscores"),
        ("?pool_max=0", "pool_max must be a whole number of connections, 1 or more"),
        ("?pool_max=many", "pool_max must be a whole number of connections, 1 or more"),
        ("?colour=blue", "is not a PostgreSQL URL libpq accepts"),
    ],
)
def test_a_bad_option_is_a_config_error_that_says_what_to_write(query_string: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_store(f"postgresql://keel@127.0.0.1/db{query_string}")


async def test_libpq_parameters_reach_the_server_spaces_and_all(schema: str) -> None:
    name = f"keel {schema}"
    store = PostgresStore(f"{postgres_server.schema_url(schema)}&application_name=keel%20{schema}")
    try:
        await store.list_runs()
        assert query("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", name) == [(1,)]
    finally:
        await store.close()


async def test_an_unreachable_server_is_a_store_error_that_says_why() -> None:
    store = PostgresStore("postgresql://keel:s3cret@127.0.0.1:1/db?connect_timeout=3")
    with pytest.raises(StoreError, match=r"cannot open the PostgreSQL store at postgresql://keel:\*\*\*@127") as err:
        await store.list_runs()
    assert "refused" in str(err.value).lower()
    assert "s3cret" not in str(err.value)


# -- schema and migrations ------------------------------------------------------------------------------------------

_OPEN_ON_GO = """
import asyncio, sys
from agentkeel.stores.postgres import PostgresStore

async def main():
    store = PostgresStore(sys.argv[1])
    await store.list_runs()
    await store.close()

print("ready", flush=True)
sys.stdin.readline()
asyncio.run(main())
print("opened", flush=True)
"""


def test_migrations_run_once_when_several_processes_start_together(schema: str, url: str) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_ON_GO, url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for process in processes:  # every process has imported agentkeel and waits
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
    for process in processes:  # then all open the fresh schema at once
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    ended = [process.communicate(timeout=60) for process in processes]

    assert [process.returncode for process in processes] == [0] * 6, [stderr for _, stderr in ended]
    applied = query(f"SELECT version, applied_by FROM {schema}.keel_migrations ORDER BY version")
    assert [version for version, _ in applied] == list(range(1, len(postgres_migrations.MIGRATIONS) + 1))
    pids = {str(process.pid) for process in processes}
    assert len({by for _, by in applied}) == 1
    assert applied[0][1].rpartition(":")[2] in pids


async def test_reopening_applies_nothing_and_keeps_the_runs(schema: str, url: str) -> None:
    store = PostgresStore(url)
    await create(store)
    assert await store.schema_version() == len(postgres_migrations.MIGRATIONS)
    await store.close()
    again = PostgresStore(url)
    try:
        assert [row.run_id for row in await again.list_runs()] == ["r1"]
    finally:
        await again.close()
    assert query(f"SELECT count(*) FROM {schema}.keel_migrations") == [(len(postgres_migrations.MIGRATIONS),)]
    tables = query("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema)
    assert {name for (name,) in tables} == {
        "keel_migrations",
        "keel_runs",
        "keel_events",
        "keel_leases",
        "keel_switches",
        "keel_switch_version",
    }


async def test_a_schema_newer_than_this_code_refuses_to_open(schema: str, url: str) -> None:
    await PostgresStore(url).list_runs()
    query(f"INSERT INTO {schema}.keel_migrations (version, applied_by) VALUES (99, 'the future')")
    with pytest.raises(
        StoreError,
        match=rf"schema version 99, newer than this agentkeel knows \({len(postgres_migrations.MIGRATIONS)}\): upgrade",
    ):
        await PostgresStore(url).list_runs()


async def test_both_dialects_have_the_same_tables_and_columns(schema: str, url: str, sqlite_path: Path) -> None:
    assert len(postgres_migrations.MIGRATIONS) == len(sqlite_migrations.MIGRATIONS)
    await SQLiteStore(sqlite_path).close()
    await PostgresStore(url).list_runs()
    with sqlite3.connect(sqlite_path) as db:
        tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        in_sqlite = {
            table: [column[1] for column in db.execute(f"PRAGMA table_info({table})")]
            for table in tables
            if table != "keel_meta"
        }
    columns = query(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
        "AND table_name <> 'keel_migrations' ORDER BY table_name, ordinal_position",
        schema,
    )
    in_postgres: dict[str, list[str]] = {}
    for table, column in columns:
        in_postgres.setdefault(table, []).append(column)
    assert in_postgres == in_sqlite


async def test_schemas_keep_stores_apart(url: str) -> None:
    with postgres_server.fresh_schema() as other:
        first, second = PostgresStore(url), PostgresStore(postgres_server.schema_url(other))
        try:
            await create(first)
            assert await second.list_runs() == []
        finally:
            await first.close()
            await second.close()


# -- concurrency ------------------------------------------------------------------------------------------------------


_LOCK_BOTH = (
    "SELECT 1 FROM {schema}.keel_leases l JOIN {schema}.keel_runs r USING (run_id) WHERE run_id = 'r1' FOR UPDATE"
)


def named(schema: str) -> str:
    """The schema's store URL, its connections named after the schema (to find them in ``pg_stat_activity``)."""
    return f"{postgres_server.schema_url(schema)}&application_name=keel_{schema}"


async def _blocked_on_a_lock(schema: str, count: int) -> None:
    """Wait until ``count`` of the statements of ``named(schema)`` stores wait for a row lock."""
    for _ in range(500):
        waiting = query(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            f"keel_{schema}",
        )
        if waiting[0][0] >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} statement(s) never waited for a lock")


async def test_an_append_that_waited_for_a_takeover_sees_the_new_owner(schema: str) -> None:
    # A takeover commits while an append of the old owner waits for it: the append must see the new owner (it
    # would not if it checked the owner against the snapshot it took before waiting). The takeover here locks both
    # of the run's rows, whichever of them the store's fence waits on.
    store = PostgresStore(named(schema))
    state = await create(store)
    try:
        async with await psycopg.AsyncConnection.connect(postgres_server.SERVER_URL) as takeover:
            await takeover.execute(_LOCK_BOTH.format(schema=schema))
            state.apply(note(1))
            append = asyncio.create_task(store.append("r1", "a", 1, [note(1)], RunRow.of(state)))
            await _blocked_on_a_lock(schema, 1)
            await takeover.execute(f"UPDATE {schema}.keel_leases SET owner = 'b' WHERE run_id = 'r1'")
            await takeover.commit()
            with pytest.raises(LeaseLost):
                await append
        assert len(await store.load("r1")) == 1
    finally:
        await store.close()


async def test_of_two_appends_after_the_same_event_one_is_written(schema: str) -> None:
    store = PostgresStore(named(schema))
    await create(store)
    try:
        async with await psycopg.AsyncConnection.connect(postgres_server.SERVER_URL) as holder:
            await holder.execute(_LOCK_BOTH.format(schema=schema))
            appends = [asyncio.create_task(store.append("r1", "a", 1, [note(n)], None)) for n in (1, 2)]
            await _blocked_on_a_lock(schema, 2)
            await holder.commit()
            outcomes = await asyncio.gather(*appends, return_exceptions=True)
        assert sorted(type(outcome).__name__ for outcome in outcomes) == ["LeaseLost", "Signals"]
        journal = await store.load("r1")
        assert len(journal) == 2
        assert journal[1] in (note(1), note(2))
    finally:
        await store.close()


async def test_of_two_processes_taking_over_an_expired_lease_at_once_one_gets_it(url: str) -> None:
    now = [1000.0]
    stores = [PostgresStore(url, clock=lambda: now[0]) for _ in range(4)]
    try:
        await create(stores[0])
        now[0] += 31.0  # the driver died: its lease ran out
        taken = await asyncio.gather(
            *(store.acquire_lease("r1", f"p{n}", 30.0) for n, store in enumerate(stores)), return_exceptions=True
        )
        winners = [lease for lease in taken if not isinstance(lease, BaseException)]
        assert len(winners) == 1
        assert all(isinstance(lost, RunBusy) for lost in taken if lost not in winners)
        assert all(lost.owner == winners[0].owner for lost in taken if isinstance(lost, RunBusy))
    finally:
        for store in stores:
            await store.close()


# -- connections and texts ------------------------------------------------------------------------------------------


async def test_pool_max_caps_the_connections(schema: str) -> None:
    name = f"keel_{schema}"
    store = PostgresStore(named(schema), pool_max=2)
    try:
        await create(store)
        await asyncio.gather(*(store.load("r1") for _ in range(20)))
        assert query("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", name) == [(2,)]
    finally:
        await store.close()
    # A closed connection's server process leaves pg_stat_activity once it has exited: a moment after the close.
    deadline = time.monotonic() + 10.0
    while (left := query("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", name)) != [(0,)]:
        assert time.monotonic() < deadline, f"connections still open 10 s after the close: {left}"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(60)
def test_an_agent_runs_on_postgres_from_sync_code_one_event_loop_after_another(url: str) -> None:
    agent = Agent(name="support", model=ScriptedModel([reply("done")]), store=url)
    first = agent.run_sync("first task")  # its event loop ends with the store open: it must not hang
    second = agent.run_sync("second task")
    assert (first.status, second.status) == ("completed", "completed")
    assert {row.run_id for row in asyncio.run(agent.store.list_runs())} == {first.run_id, second.run_id}
    asyncio.run(agent.store.close())


async def test_text_postgres_cannot_hold_is_kept_whole_in_the_journal(url: str) -> None:
    store = PostgresStore(url)
    try:
        state = await create(store, task="refund\x00#12")
        await store.request_cancel("r1", CancelRequest(by="ops\x00", reason="stop", at=1.0))
        answer = await store.append("r1", "a", 1, [note(1)], RunRow.of(state))
        assert answer.cancel == CancelRequest(by="ops\ufffd", reason="stop", at=1.0)
        [row] = await store.list_runs()
        assert row.task == "refund\ufffd#12"
        first = (await store.load("r1"))[0]
        assert isinstance(first, RunStarted)
        assert first.task == "refund\x00#12"
    finally:
        await store.close()


# -- group commit -----------------------------------------------------------------------------------------------------


async def test_concurrent_runs_share_append_statements_and_each_journal_is_whole(url: str) -> None:
    store = PostgresStore(url)

    @tool
    async def lookup(order_id: str) -> dict[str, str]:
        return {"order_id": order_id}

    turns = [call("lookup", order_id="#0001"), call("lookup", order_id="#0002"), reply("done")]

    async def script(request: ModelRequest) -> ModelResponse:
        await asyncio.sleep(0)  # each turn lets the other runs go first, as a model's latency would
        return turns[sum(1 for message in request.messages if message.kind == "assistant")]

    agent = Agent(name="many", model=ScriptedModel(script), tools=[lookup], store=store)
    try:
        results = await asyncio.gather(*(agent.run(f"task {n}") for n in range(30)))
        assert {r.status for r in results} == {"completed"}
        assert store._batcher.batches > 0, "no append was shared"
        for result in results:
            state = replay(await store.load(result.run_id))
            assert (state.status, state.steps_completed, state.tool_calls) == ("completed", 3, 2)
    finally:
        await store.close()


async def test_a_fenced_append_in_a_batch_fails_alone_and_the_others_commit(url: str) -> None:
    store = PostgresStore(url)
    try:
        first, second = await create(store, "r1", "a"), await create(store, "r2", "b")

        async def append(state: RunState, owner: str) -> None:
            after = state.last_seq
            event = note(after)
            state.apply(event)
            await store.append(state.run_id, owner, after, [event], RunRow.of(state))

        outcomes = await asyncio.gather(append(first, "a"), append(second, "intruder"), return_exceptions=True)
        assert outcomes[0] is None and isinstance(outcomes[1], LeaseLost)
        assert store._batcher.batches == 1  # both in one statement
        assert len(await store.load("r1")) == 2
        assert len(await store.load("r2")) == 1
    finally:
        await store.close()


async def test_runs_started_together_share_a_statement_and_a_taken_id_fails_alone(url: str) -> None:
    store = PostgresStore(url)
    try:
        await create(store, "taken", "a")
        batches = store._creates.batches
        outcomes = await asyncio.gather(
            *(create(store, run_id, "b") for run_id in ("n1", "taken", "n2", "n3")), return_exceptions=True
        )
        assert [type(outcome).__name__ for outcome in outcomes] == ["RunState", "RunIdTaken", "RunState", "RunState"]
        assert "already exists" in str(outcomes[1])
        assert store._creates.batches == batches  # the batch failed as a whole, then each went alone
        for run_id in ("n1", "n2", "n3"):
            assert len(await store.load(run_id)) == 1
        more = await asyncio.gather(*(create(store, f"m{n}", "c") for n in range(5)))
        assert len(more) == 5 and store._creates.batches == batches + 1  # five runs, one statement
        assert {row.run_id for row in await store.list_runs(limit=20)} >= {"n1", "n2", "n3", "m0", "m4"}
    finally:
        await store.close()


async def test_leases_let_go_together_only_their_owners(url: str) -> None:
    store = PostgresStore(url)
    try:
        for n in range(4):
            await create(store, f"r{n}", f"o{n}")
        # r3 is let go of by someone who does not hold it: its lease stays
        await asyncio.gather(*(store.release_lease(f"r{n}", f"o{n}" if n < 3 else "intruder") for n in range(4)))
        assert store._releases.batches >= 1
        taken = await asyncio.gather(*(store.acquire_lease(f"r{n}", "next", 30.0) for n in range(3)))
        assert {lease.owner for lease in taken} == {"next"}
        with pytest.raises(RunBusy):
            await store.acquire_lease("r3", "next", 30.0)
    finally:
        await store.close()
