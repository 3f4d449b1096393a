"""What only the SQLite store has to get right: its file, its schema version, and several processes on one file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentkeel import LeaseLost, RunBusy, SQLiteStore, StoreError
from agentkeel.core.events import NoteWritten, RunStarted
from agentkeel.core.state import replay
from agentkeel.stores.base import CancelRequest, RunRow
from agentkeel.stores.migrations import MIGRATIONS


def first_event(run_id: str = "r1") -> RunStarted:
    return RunStarted(at=100.0, run_id=run_id, agent="support", task="t", model="scripted")


async def create(store: SQLiteStore, run_id: str = "r1", owner: str = "a") -> None:
    first = first_event(run_id)
    await store.create_run(first, RunRow.of(replay([first])), owner=owner, lease_s=30.0)


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


async def test_the_file_is_created_with_its_directories_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "keel.db"
    store = SQLiteStore(path)
    try:
        assert path.exists()
        assert raw(path, "PRAGMA journal_mode") == [("wal",)]
        assert store.url == f"sqlite:///{path}"
    finally:
        await store.close()


@pytest.mark.parametrize(("mode", "value"), [("full", 2), ("normal", 1), ("NORMAL", 1), ("off", 0)])
async def test_the_synchronous_mode_is_applied(sqlite_path: Path, mode: str, value: int) -> None:
    store = SQLiteStore(sqlite_path, synchronous=mode)
    try:
        assert store._db.execute("PRAGMA synchronous").fetchone() == (value,)
    finally:
        await store.close()


def test_an_unknown_synchronous_mode_is_refused(sqlite_path: Path) -> None:
    with pytest.raises(StoreError, match="not a SQLite mode: use one of off, normal, full, extra"):
        SQLiteStore(sqlite_path, synchronous="fast")


async def test_the_schema_version_is_recorded_and_migrations_run_once(sqlite_path: Path) -> None:
    store = SQLiteStore(sqlite_path)
    assert store.schema_version == len(MIGRATIONS)
    await create(store)
    await store.close()
    # Reopening finds the tables already there: re-running a CREATE TABLE would fail.
    again = SQLiteStore(sqlite_path)
    try:
        assert again.schema_version == len(MIGRATIONS)
        assert raw(sqlite_path, "SELECT key, value FROM keel_meta") == [("schema_version", str(len(MIGRATIONS)))]
        tables = {name for (name,) in raw(sqlite_path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {
            "keel_meta",
            "keel_runs",
            "keel_events",
            "keel_leases",
            "keel_switches",
            "keel_switch_version",
        }
    finally:
        await again.close()


async def test_reopening_a_file_keeps_its_runs(sqlite_path: Path) -> None:
    store = SQLiteStore(sqlite_path)
    await create(store)
    state = replay(await store.load("r1"))
    event = NoteWritten(at=101.0, key="k", value="v")
    state.apply(event)
    await store.append("r1", "a", 1, [event], RunRow.of(state))
    await store.close()

    again = SQLiteStore(sqlite_path)
    try:
        assert await again.load("r1") == [first_event(), event]
        assert [r.run_id for r in await again.list_runs()] == ["r1"]
    finally:
        await again.close()


async def test_a_store_with_a_newer_schema_refuses_to_open(sqlite_path: Path) -> None:
    await SQLiteStore(sqlite_path).close()
    with sqlite3.connect(sqlite_path) as db:
        db.execute("UPDATE keel_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(
        StoreError, match=rf"schema version 99, newer than this agentkeel knows \({len(MIGRATIONS)}\): upgrade"
    ):
        SQLiteStore(sqlite_path)


def test_a_file_that_is_not_a_database_is_a_store_error(sqlite_path: Path) -> None:
    sqlite_path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="cannot open the SQLite store"):
        SQLiteStore(sqlite_path)


async def test_two_stores_on_one_file_see_each_others_writes_and_leases(sqlite_path: Path) -> None:
    now = [1000.0]
    first = SQLiteStore(sqlite_path, clock=lambda: now[0])
    second = SQLiteStore(sqlite_path, clock=lambda: now[0])
    try:
        await create(first, owner="process-1")
        assert [e.kind for e in await second.load("r1")] == ["run_started"]

        with pytest.raises(RunBusy, match="driven by process-1"):
            await second.acquire_lease("r1", "process-2", 30.0)

        state = replay(await second.load("r1"))
        event = NoteWritten(at=101.0, key="k", value="v")
        state.apply(event)
        with pytest.raises(LeaseLost):
            await second.append("r1", "process-2", 1, [event], RunRow.of(state))
        await first.append("r1", "process-1", 1, [event], RunRow.of(state))
        assert await second.load("r1") == [first_event(), event]

        await second.request_cancel("r1", CancelRequest(by="ops", reason="stop", at=5.0))
        state.apply(NoteWritten(at=102.0, key="k2", value="v2"))
        answer = await first.append(
            "r1", "process-1", 2, [NoteWritten(at=102.0, key="k2", value="v2")], RunRow.of(state)
        )
        assert answer.cancel == CancelRequest(by="ops", reason="stop", at=5.0)

        now[0] += 31.0  # process-1 died: its lease ran out
        await second.acquire_lease("r1", "process-2", 30.0)
        with pytest.raises(LeaseLost):
            await first.append("r1", "process-1", 3, [NoteWritten(at=103.0, key="k3", value="v")], RunRow.of(state))
        assert len(await first.load("r1")) == 3
    finally:
        await first.close()
        await second.close()
