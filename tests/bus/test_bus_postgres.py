"""What only the PostgreSQL bus has to show: its URLs, its errors, tables created by processes that start together,
consumers of one group racing on separate connections, publishers of one topic committing in order, settlements
racing, and a consumer process killed mid-message.

The rules every backend keeps run on PostgreSQL too, in ``test_bus_contract.py``. Tests that need the server skip
without one, or fail under ``CI=true`` (``postgres_server.py``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from test_bus_kill import kill_and_take_over

import postgres_server
from agentkeel.bus import Message, open_bus
from agentkeel.bus.base import new_message
from agentkeel.errors import ConfigError, StoreError
from conftest import BusCase, close_case, eventually, open_postgres_case


@pytest.fixture
async def pg() -> AsyncIterator[BusCase]:
    opened = open_postgres_case()
    try:
        yield opened
    finally:
        await close_case(opened)


# -- URLs: no server needed ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgres_url_opens_a_postgres_bus_with_its_password_masked(scheme: str) -> None:
    from agentkeel.bus.postgres import PostgresBus

    bus = open_bus(f"{scheme}://keel:s3cret@127.0.0.1:1/db?schema=keel&pool_max=3&sslmode=disable")
    assert isinstance(bus, PostgresBus)
    assert bus.url == f"{scheme}://keel:***@127.0.0.1:1/db?schema=keel&pool_max=3&sslmode=disable"
    assert (bus.schema, bus.pool_max) == ("keel", 3)
    with pytest.raises(ConfigError, match="schema 'Keel-1' must be a lowercase name"):
        open_bus(f"{scheme}://127.0.0.1/db?schema=Keel-1")
    with pytest.raises(ConfigError, match="pool_max must be a whole number"):
        open_bus(f"{scheme}://127.0.0.1/db?pool_max=0")
    with pytest.raises(ConfigError, match="not a PostgreSQL URL libpq accepts"):
        open_bus(f"{scheme}://127.0.0.1/db?prefix=keel")


def test_a_postgres_url_without_the_driver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an install without agentkeel[postgres] finds
    monkeypatch.delitem(sys.modules, "agentkeel.bus.postgres", raising=False)
    with pytest.raises(ConfigError, match=r"pip install 'agentkeel\[postgres\]'"):
        open_bus("postgresql://127.0.0.1/db")


async def test_an_unreachable_server_says_where_and_what_to_check() -> None:
    bus = open_bus("postgresql://keel:s3cret@127.0.0.1:1/db?connect_timeout=2")
    with pytest.raises(StoreError) as raised:
        await bus.publish("jobs", 1)
    message = str(raised.value)
    assert message.startswith("cannot reach the PostgreSQL bus at postgresql://keel:***@127.0.0.1:1/db")
    assert "check that the server runs there" in message and "s3cret" not in message
    await bus.close()


# -- on the server ------------------------------------------------------------------------------------------------


async def test_buses_and_a_store_starting_together_on_a_fresh_schema_all_find_their_tables(pg: BusCase) -> None:
    from agentkeel.stores.postgres import PostgresStore

    buses = [pg.another() for _ in range(6)]
    store = PostgresStore(pg.url)
    try:
        *listings, version = await asyncio.gather(*(bus.topics() for bus in buses), store.schema_version())
    finally:
        await store.close()
    assert listings == [[]] * len(buses)
    assert version >= 1
    await pg.bus.publish("jobs", "after")
    assert [row.topic for row in await buses[0].topics()] == ["jobs"]
    await buses[0].drop()  # the tables go; its next call makes them again
    assert await buses[0].consume("jobs", "workers", "w") is None


async def test_consumers_of_one_group_on_separate_connections_get_each_message_exactly_once(pg: BusCase) -> None:
    publishers = [pg.another() for _ in range(3)]
    consumers = [pg.another() for _ in range(3)]
    per_publisher = 150
    total = per_publisher * len(publishers)
    published: list[str] = []
    delivered: dict[str, list[str]] = {}  # message id: the consumers it was delivered to

    async def publish(n: int) -> None:
        for k in range(per_publisher):
            published.append((await publishers[n].publish("jobs", {"by": n, "k": k})).id)

    async def consume(n: int) -> None:
        while sum(len(names) for names in delivered.values()) < total:
            message = await consumers[n].consume("jobs", "workers", f"c{n}", block_s=0.05)
            if message is not None:
                delivered.setdefault(message.id, []).append(f"c{n}")
                assert message.attempts == 1
                assert await consumers[n].ack(message, "workers")

    async with asyncio.timeout(60):  # publishers racing on one topic too: a message skipped would never come
        await asyncio.gather(*(publish(n) for n in range(len(publishers))), *(consume(n) for n in range(3)))
    assert sorted(delivered) == sorted(published)
    assert {message_id: names for message_id, names in delivered.items() if len(names) > 1} == {}
    [stats] = await pg.bus.topics()
    assert (stats.messages, stats.pending, stats.lag) == (total, 0, 0)


async def test_publishers_on_a_topic_wait_for_one_that_has_not_committed_so_no_message_is_skipped(
    pg: BusCase,
) -> None:
    """A message's ``seq`` is drawn at its insert; were a later one visible first, a cursor would pass the earlier
    one for good. Here the first publisher's transaction stays open after its insert, while another publisher and
    a settlement that publishes on the same topic come along."""
    import psycopg

    from agentkeel.bus.postgres import PostgresBus, _insert

    await pg.bus.publish("requests", "answer me")
    request = await pg.bus.consume("requests", "answerers", "a")
    assert request is not None
    application = f"publisher_{pg.schema}"
    later = [PostgresBus(f"{pg.url}&application_name={application}") for _ in range(2)]
    pg.others.extend(later)
    tasks: list[asyncio.Task[Any]] = []
    first = new_message("jobs", "first", correlation_id=None, causation_id=None, headers=None, now=0.0)
    async with (
        await psycopg.AsyncConnection.connect(
            postgres_server.SERVER_URL, autocommit=True, options=f"-c search_path={pg.schema}"
        ) as publisher,
        await psycopg.AsyncConnection.connect(postgres_server.SERVER_URL, autocommit=True) as watcher,
    ):

        async def done_or_waiting() -> bool:
            waiting = await watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                (application,),
            )
            row = await waiting.fetchone()
            return sum(task.done() for task in tasks) + (row[0] if row else 0) == len(tasks)

        try:
            # A hang here would hold the first publisher's locks through the teardown: fail instead.
            async with asyncio.timeout(30), publisher.transaction():
                await _insert(publisher, [first])  # its seq drawn, not committed yet
                tasks.append(asyncio.create_task(later[0].publish("jobs", "second")))
                tasks.append(asyncio.create_task(later[1].ack(request, "answerers", publish=[("jobs", "answer")])))
                await eventually(done_or_waiting)
                assert await pg.bus.consume("jobs", "workers", "w") is None  # none is visible yet
        finally:
            await asyncio.gather(*tasks, return_exceptions=True)
    got = [await pg.bus.consume("jobs", "workers", "w") for _ in range(3)]
    assert got[0] is not None and got[0].payload == "first"
    assert {message.payload for message in got[1:] if message is not None} == {"second", "answer"}


async def test_concurrent_settlements_of_one_message_publish_its_outputs_once(pg: BusCase) -> None:
    await pg.bus.publish("research", "topic X")
    taken = await pg.bus.consume("research", "writers", "slow")
    assert taken is not None
    pg.advance(60.0)
    [claimed] = await pg.another().claim_stale("research", "writers", "fast", idle_s=1.0)
    settlers = [pg.another() for _ in range(4)]
    outcomes = await asyncio.gather(
        *(
            bus.ack(message, "writers", publish=[("drafts", n)])
            for n, (bus, message) in enumerate(zip(settlers, [taken, claimed, taken, claimed], strict=True))
        )
    )
    assert sorted(outcomes) == [False, False, False, True]
    drafts: list[Message] = []
    while (draft := await pg.bus.consume("drafts", "editors", "e")) is not None:
        drafts.append(draft)
    assert [draft.payload for draft in drafts] == [outcomes.index(True)]


@pytest.mark.crash
async def test_a_consumer_killed_mid_message_is_finished_by_another_once(tmp_path: Path) -> None:
    case = open_postgres_case()  # the consumer processes time idleness with the real clock
    try:
        await kill_and_take_over(case, tmp_path)
    finally:
        await close_case(case)
