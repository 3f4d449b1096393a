"""The PostgreSQL bus: topics in the database of the PostgreSQL store, for consumers on several machines (needs
``agentkeel[postgres]``).

``postgresql://user:password@host:5432/db?schema=keel&pool_max=4``: ``schema`` (created when missing) and
``pool_max`` are this bus's, as for the store (``stores/postgres.py``); every other query parameter goes to libpq.
Its tables (``keel_bus_*``, laid out as the SQLite bus's) can share the store's schema. The first call creates
them with ``CREATE TABLE IF NOT EXISTS`` under the schema's advisory lock (the one the store's migrations take), so
processes that start together queue instead of colliding.

Every operation is one statement, hence one transaction, at READ COMMITTED (data-modifying ``WITH`` clauses where
it touches several tables), so a delivery, a settlement and the outputs it publishes commit together or not at
all, in one round trip. Consumers of one group take new messages under a lock on the group's cursor row
(``FOR UPDATE``), so two of them never get the same one; redeliveries and takeovers lock the pending rows they take
(``FOR UPDATE SKIP LOCKED``), so concurrent takers share them out instead of waiting for each other.

Publishing order. A cursor is the ``seq`` of the last message its group was given, and a ``seq`` is drawn when its
row is inserted, not when it commits: two publishers of one topic could commit out of order, and a cursor moved
past a row not yet visible would skip that message for good. So a publish takes a transaction-level advisory lock
on its topic before its rows draw their ``seq`` and holds it until it commits: on one topic, rows become visible
in ``seq`` order. Publishers of different topics do not wait for each other.

A consumer learns of new messages by polling (``consume(block_s=...)``), as on SQLite.

Trimming. ``trim`` removes old messages in batches, each one transaction that first takes ``keel_bus_groups`` in
SHARE mode: while a batch decides which messages every group has been given, no cursor moves and no group is
created. Without it, a group created during the batch could take a message the batch then removes, leaving a
delivery whose message is gone. Consumers taking new messages wait for one batch at most; publishing, settling,
redelivering and taking over do not wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

from agentkeel.bus import postgres_sql as statements
from agentkeel.bus.base import (
    DEAD_SUFFIX,
    Message,
    Outgoing,
    TopicStats,
    TrimReport,
    check_topic,
    dead_message,
    dead_topic,
    new_message,
    outgoing_message,
    topic_stats,
)
from agentkeel.bus.rows import row_message, row_seq
from agentkeel.errors import StoreError
from agentkeel.stores.postgres_migrations import MIGRATION_LOCK
from agentkeel.stores.postgres_pool import Connection, LoopPool
from agentkeel.stores.postgres_url import postgres_target

DEFAULT_POOL_MAX = 4
_POLL_S = 0.05

_TRIM_BATCH = 500


class PostgresBus:
    """Topics, groups, deliveries and the handled-ids record in a PostgreSQL database."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        target = postgres_target(url, what="bus", application_name="agentkeel-bus", default_pool_max=DEFAULT_POOL_MAX)
        self.url, self.schema, self.pool_max, self._conninfo = (
            target.url,
            target.schema,
            target.pool_max,
            target.conninfo,
        )
        self._clock = clock
        self._pool = LoopPool(
            self._conninfo,
            self.pool_max,
            prepare=self._create_tables,
            unreachable=self._unreachable,
            unprepared=lambda exc: f"cannot create the bus's tables at {self.url}: {exc}",
        )

    # -- connections ------------------------------------------------------------------------------------------

    async def _create_tables(self, conn: Connection) -> None:
        """The schema and the tables, under the lock the store's migrations take for the same schema: concurrent
        ``CREATE ... IF NOT EXISTS`` of one name can still collide, so processes that start together queue. Only
        when something is missing: ``CREATE INDEX IF NOT EXISTS`` locks its table even when the index exists, and
        would wait for every transaction writing to it."""
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, hashtext(coalesce(%s::text, current_schema(), '')))",
                (MIGRATION_LOCK, self.schema),
            )
            if self.schema is not None:  # CREATE SCHEMA IF NOT EXISTS would demand the privilege even when it exists
                found = await (
                    await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
                ).fetchone()
                if found is None:
                    await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            present = await (
                await conn.execute(
                    "SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest(%s::text[]) name", (statements.NAMES,)
                )
            ).fetchone()
            if present is None or not present[0]:
                for statement in statements.TABLES:
                    await conn.execute(statement)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A connection in autocommit, where one statement is one transaction."""
        pool = await self._pool.ready()
        conn: Connection | None = None
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            if conn is None or conn.broken:
                raise StoreError(self._unreachable(exc)) from exc
            raise StoreError(f"the PostgreSQL bus at {self.url} failed: {exc}") from exc

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"cannot reach the PostgreSQL bus at {self.url} ({exc}): check that the server runs there and accepts "
            "the URL's user, password and database, or pass another bus URL (--bus / KEEL_BUS)"
        )

    # -- the Bus protocol -------------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        message = new_message(
            check_topic(topic),
            payload,
            correlation_id=correlation_id,
            causation_id=causation_id,
            headers=headers,
            now=self._clock(),
        )
        async with self._connection() as conn:
            await _insert(conn, [message])
        return message

    async def consume(self, topic: str, group: str, consumer: str, *, block_s: float = 0.0) -> Message | None:
        deadline = time.monotonic() + block_s
        while True:
            async with self._connection() as conn:
                message = await self._next(conn, topic, group, consumer)
            left = deadline - time.monotonic()
            if message is not None or left <= 0:
                return message
            await asyncio.sleep(min(_POLL_S, left))  # other processes publish too: poll

    async def _next(self, conn: Connection, topic: str, group: str, consumer: str) -> Message | None:
        params = {"topic": topic, "group": group, "consumer": consumer, "now": self._clock()}
        while True:
            found = await (await conn.execute(statements.NEXT, params)).fetchone()
            if found is None:  # the group's first consume
                await conn.execute(
                    "INSERT INTO keel_bus_groups (topic, grp) VALUES (%s, %s) ON CONFLICT DO NOTHING", (topic, group)
                )
                continue
            kind, *row = found
            if kind == "retry":
                return row_message(row[:-2], attempts=row[-2], error=row[-1], consumer=consumer)
            if kind == "new":
                return row_message(row[:-2], attempts=1, consumer=consumer)
            if kind == "none":
                return None
            # settled by this group already (published twice under one id): never again

    async def _settle(self, message: Message, group: str, outputs: Sequence[Message]) -> bool:
        params = {"group": group, "seq": int(message.receipt), "id": message.id, "now": self._clock()}
        async with self._connection() as conn:
            found = await (await conn.execute(statements.SETTLE, {**params, **_appended(outputs)})).fetchone()
        return found is not None and found[0] > 0

    async def ack(self, message: Message, group: str, *, publish: Sequence[Outgoing] = ()) -> bool:
        now = self._clock()
        outputs = [outgoing_message(message, check_topic(topic), payload, now=now) for topic, payload in publish]
        return await self._settle(message, group, outputs)

    async def nack(self, message: Message, group: str, error: str) -> None:
        async with self._connection() as conn:  # only the delivery it was given (a claimed one has moved on)
            await conn.execute(
                "UPDATE keel_bus_pending SET consumer = NULL, error = %s WHERE grp = %s AND seq = %s AND attempts = %s",
                (_text(error), group, int(message.receipt), message.attempts),
            )

    async def dead_letter(self, message: Message, group: str, error: str) -> bool:
        return await self._settle(message, group, [dead_message(message, group, error, now=self._clock())])

    async def touch(self, message: Message, group: str) -> bool:
        async with self._connection() as conn:  # only the delivery it was given: a taker's has more attempts
            cursor = await conn.execute(
                "UPDATE keel_bus_pending SET delivered_at = %s "
                "WHERE grp = %s AND seq = %s AND consumer = %s AND attempts = %s",
                (self._clock(), group, row_seq(message), message.consumer, message.attempts),
            )
        return cursor.rowcount > 0

    async def claim_stale(self, topic: str, group: str, consumer: str, *, idle_s: float) -> list[Message]:
        now = self._clock()
        params = {"topic": topic, "group": group, "consumer": consumer, "now": now, "before": now - idle_s}
        async with self._connection() as conn:
            rows = await (await conn.execute(statements.STALE, params)).fetchall()
        return [row_message(row[:-2], attempts=row[-2], error=row[-1], consumer=consumer) for row in rows]

    async def trim(self, *, before: float, dead: bool = False) -> TrimReport:
        removed = removed_dead = kept = 0
        params: dict[str, Any] = {
            "before": before,
            "with_dead": dead,
            "suffix": DEAD_SUFFIX,
            "suffix_len": len(DEAD_SUFFIX),
            "batch": _TRIM_BATCH,
            "after": 0,
        }
        while True:
            async with self._connection() as conn, conn.transaction():
                await conn.execute("LOCK TABLE keel_bus_groups IN SHARE MODE")  # no cursor moves, no new group
                found = await (await conn.execute(statements.TRIM, params)).fetchone()
            assert found is not None
            looked, last, gone, dead_gone = found
            removed, removed_dead, kept = removed + gone, removed_dead + dead_gone, kept + looked - gone - dead_gone
            if looked < _TRIM_BATCH:
                break
            params["after"] = last
        handled = 0
        key: dict[str, Any] = {"before": before, "grp": "", "message_id": "", "batch": _TRIM_BATCH}
        while True:
            async with self._connection() as conn:
                found = await (await conn.execute(statements.TRIM_HANDLED, key)).fetchone()
            assert found is not None
            looked, key["grp"], key["message_id"], gone = found
            handled += gone
            if looked < _TRIM_BATCH:
                break
        return TrimReport(messages=removed, handled=handled, dead_letters=removed_dead, kept=kept)

    async def topics(self) -> list[TopicStats]:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
            counted = await conn.execute("SELECT topic, count(*) FROM keel_bus_messages GROUP BY topic")
            grouped = await conn.execute(
                "SELECT g.topic, g.grp, (SELECT count(*) FROM keel_bus_messages m "
                "WHERE m.topic = g.topic AND m.seq > g.cursor) FROM keel_bus_groups g ORDER BY g.topic, g.grp"
            )
            pended = await conn.execute("SELECT topic, grp, count(*) FROM keel_bus_pending GROUP BY topic, grp")
            counts: dict[str, int] = dict(await counted.fetchall())
            groups = await grouped.fetchall()
            pending = {(topic, group): count for topic, group, count in await pended.fetchall()}
        lag = {(topic, group): count for topic, group, count in groups}
        return topic_stats(counts, [(topic, group) for topic, group, _ in groups], pending, lag)

    async def dead_letters(self, topic: str) -> list[Message]:
        async with self._connection() as conn:
            rows = await (
                await conn.execute(
                    f"SELECT {statements.COLUMNS} FROM keel_bus_messages m WHERE m.topic = %s ORDER BY m.seq",
                    (dead_topic(topic),),
                )
            ).fetchall()
        return [row_message(row, attempts=0) for row in rows]

    async def close(self) -> None:
        await self._pool.close()

    async def drop(self) -> None:
        """Drop the bus's tables (tests, and resetting a bus); this object's next call creates them again."""
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s::integer, hashtext(coalesce(%s::text, current_schema(), '')))",
                (MIGRATION_LOCK, self.schema),
            )
            await conn.execute(
                "DROP TABLE IF EXISTS keel_bus_messages, keel_bus_groups, keel_bus_pending, keel_bus_handled"
            )
        await self.close()


async def _insert(conn: Connection, messages: Sequence[Message]) -> None:
    """Append ``messages`` under their topics' advisory locks, held until the transaction commits (in autocommit:
    the statement's end)."""
    await conn.execute(statements.PUBLISH, _appended(messages))


def _appended(messages: Sequence[Message]) -> dict[str, Any]:
    """The parameters of ``statements.APPEND`` (and the topics to lock) for ``messages``."""
    return {
        "locks": sorted({message.topic for message in messages}),
        "ids": [message.id for message in messages],
        "topics": [message.topic for message in messages],
        "payloads": [json.dumps(message.payload) for message in messages],
        "correlation_ids": [message.correlation_id for message in messages],
        "causation_ids": [message.causation_id for message in messages],
        "headers": [json.dumps(dict(message.headers)) for message in messages],
        "published_at": [message.published_at for message in messages],
    }


def _text(value: str) -> str:
    """PostgreSQL's text cannot hold NUL characters: U+FFFD stands for them."""
    return value.replace("\x00", "\ufffd")
