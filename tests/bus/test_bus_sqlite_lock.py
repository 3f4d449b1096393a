"""The SQLite bus shares its file with other processes: an operation that finds another process's write lock
waits on timers while the event loop runs on, and gives up after its busy timeout having written nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from agentkeel import StoreError
from agentkeel.bus import SQLiteBus
from loop_turns import longest_turn


async def test_a_publish_waits_for_another_process_s_lock_while_the_loop_runs_on(tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db", busy_timeout_s=5.0)
    other = sqlite3.connect(tmp_path / "bus.db", isolation_level=None)  # another process, as far as SQLite knows
    other.execute("BEGIN IMMEDIATE")
    publish = asyncio.create_task(bus.publish("orders", {"id": 1}))
    longest = await longest_turn()  # the loop keeps turning: the publish waits on a timer, not in the driver
    assert not publish.done()
    assert longest < 2.5  # a loop stalled in the driver's busy wait would show a turn of the whole 5 s
    other.execute("COMMIT")
    sent = await publish
    got = await bus.consume("orders", "g", "c")
    assert got is not None and (got.id, got.payload) == (sent.id, {"id": 1})
    other.close()
    await bus.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_operation_and_the_bus_goes_on(tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db", busy_timeout_s=0.05)
    other = sqlite3.connect(tmp_path / "bus.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"another process held a lock on the bus at .* for 0\.05 s"):
        await bus.publish("orders", {"id": 1})
    other.execute("COMMIT")
    await bus.publish("orders", {"id": 2})
    got = await bus.consume("orders", "g", "c")
    assert got is not None and got.payload == {"id": 2}  # nothing of the failed publish was written
    other.close()
    await bus.close()


async def test_tasks_of_one_process_take_turns_on_the_connection(tmp_path: Path) -> None:
    bus = SQLiteBus(tmp_path / "bus.db")
    await asyncio.gather(*(bus.publish("orders", {"id": n}) for n in range(50)))
    assert (await bus.topics())[0].messages == 50
    await bus.close()


def test_a_busy_timeout_that_is_not_a_positive_time_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"busy_timeout_s=0: give a number of seconds above 0"):
        SQLiteBus(tmp_path / "bus.db", busy_timeout_s=0)
