"""The PostgreSQL store: journals in a database that many processes on many machines share.

``postgresql://user:password@host:5432/db?schema=keel&pool_max=10``: ``schema`` (created when missing, then used
through the connections' ``search_path``) and ``pool_max`` are this store's; every other query parameter goes to
libpq (``sslmode``, ``connect_timeout``, ...). Events are kept as ``BYTEA`` holding the very JSON bytes the SQLite
store keeps (``core/codec.py``), so a journal reads the same from either.

Connections. ``open_store`` is synchronous and the engine is not, so the store connects on its first awaited call
(under a lock, once): it migrates the schema (``postgres_migrations.py``), and that connection starts a small pool
(``postgres_pool.py``) that opens more as calls need them, up to ``pool_max`` (10 by default). A pool serves the
event loop it was made in; called from another loop (``run_sync`` twice, say), the store closes it and starts
another. The connections are in autocommit and every write is one statement (data-modifying ``WITH`` clauses
where a write touches several tables): one round trip, one transaction. Measured against a transaction of
separate statements, even pipelined, that is a third of the client's CPU per append, and the hot path is CPU-bound.

Isolation and locking. Statements run at READ COMMITTED, the server's default. An append locks its run's lease
row (``FOR UPDATE``); lease takeovers (``INSERT ... ON CONFLICT DO UPDATE``), renewals and releases lock the same
row, so appends and takeovers of one run queue behind each other while different runs never wait for each other.
The lease row rather than the run row, because a READ COMMITTED statement that waited for a row lock re-reads that
row at its newest version but everything else at the snapshot it took before waiting: locking the row that holds
the owner makes the owner check current. The journal length read beside it can be behind only if another append
committed meanwhile; then the insert collides on ``(run_id, seq)`` and the append fails with ``LeaseLost``, writing
nothing.

Leases expire by the client's clock, as in the SQLite store (so that tests can move it): machines that share a
database need synchronised clocks, and a lease far longer than their drift.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from agentkeel.core.codec import decode_journal
from agentkeel.core.events import Event, RunStarted
from agentkeel.errors import Killed, LeaseLost, RunBusy, RunIdTaken, RunNotFound, StoreError
from agentkeel.stores import postgres_sql as sql
from agentkeel.stores.base import (
    CancelRequest,
    Lease,
    RunRow,
    Signals,
    Switch,
    ToolCounts,
    blocking_switch,
    run_filters,
    signals,
)
from agentkeel.stores.encoding import journal_bytes
from agentkeel.stores.postgres_batch import Batcher, PendingAppend, append_params, columns
from agentkeel.stores.postgres_migrations import migrate
from agentkeel.stores.postgres_pool import Connection, LoopPool
from agentkeel.stores.postgres_url import postgres_target

DEFAULT_POOL_MAX = 10

# Tool call outcomes per run and tool, from the journals of the runs a listing's filters (``{where}``) select: the
# join walks each selected run's events by the primary key (run_id, seq) and parses the JSON of its finished calls
# only, as ``json`` (read once, so not worth building ``jsonb``) from the UTF-8 bytes the codec wrote.
_TOOL_OUTCOMES = """
SELECT run_id, doc ->> 'name' AS tool, count(*), count(*) FILTER (WHERE json_typeof(doc -> 'error') = 'object')
FROM (
    SELECT e.run_id, convert_from(e.data, 'UTF8')::json AS doc
    FROM keel_runs r JOIN keel_events e ON e.run_id = r.run_id AND e.kind = 'tool_call_finished'
    {where}
) AS finished
GROUP BY run_id, tool"""


class PostgresStore:
    """Journals in a PostgreSQL database. ``schema`` and ``pool_max``, when given, win over the URL's."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        schema: str | None = None,
        pool_max: int | None = None,
    ) -> None:
        target = postgres_target(
            url,
            what="store",
            application_name="agentkeel",
            default_pool_max=DEFAULT_POOL_MAX,
            schema=schema,
            pool_max=pool_max,
        )
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
            prepare=self._migrate,  # the schema is current before any call uses it
            unreachable=lambda exc: f"cannot open the PostgreSQL store at {self.url}: {exc}",
            unprepared=lambda exc: f"cannot migrate the PostgreSQL store at {self.url}: {exc}",
        )
        self._leased: set[str] = set()  # runs this store object leased out: the runs driven through it now
        self._batcher: Batcher[PendingAppend, Signals] = Batcher(run_many=self._append_many, run_one=self._append_one)
        self._creates: Batcher[_NewRun, None] = Batcher(run_many=self._create_many, run_one=self._create_one)
        self._releases: Batcher[tuple[str, str], None] = Batcher(run_many=self._release_many, run_one=self._release_one)

    # -- connections ------------------------------------------------------------------------------------------

    async def _migrate(self, conn: Connection) -> None:
        await migrate(conn, self.schema, self.url)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        pool = await self._pool.ready()
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StoreError(f"the PostgreSQL store at {self.url} failed: {exc}") from exc

    async def schema_version(self) -> int:
        """The highest migration applied to the schema."""
        async with self._connection() as conn:
            row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM keel_migrations")).fetchone()
        return int(row[0]) if row else 0

    # -- the Store protocol -----------------------------------------------------------------------------------

    async def create_run(self, first: RunStarted, row: RunRow, *, owner: str, lease_s: float) -> None:
        item = _NewRun(first, row, owner, self._clock() + lease_s, lease_s)
        await self._creates.submit(item)  # runs started together share a statement (alone: one of its own)
        self._leased.add(first.run_id)

    async def _create_one(self, item: _NewRun) -> None:
        first = item.first
        params: dict[str, Any] = dict(zip(_ROW_NAMES, _row_values(item.row), strict=True))
        params.update(
            agents=[params["agent"]],
            kind=first.kind,
            at=first.at,
            data=journal_bytes(first),
            owner=item.owner,
            expires_at=item.expires_at,
            lease_s=item.lease_s,
        )
        async with self._connection() as conn:
            try:
                cursor = await conn.execute(sql.CREATE, params)
            except psycopg.errors.UniqueViolation as exc:
                raise RunIdTaken(first.run_id, self.url) from exc
            stopping = [_switch_of(found) for found in await cursor.fetchall()]
        stop = blocking_switch(stopping, _text(item.row.agent))
        if stop is not None:
            raise Killed(stop, item.row.agent)

    async def _create_many(self, items: list[_NewRun]) -> list[BaseException | None]:
        params = columns([_row_values(item.row) for item in items], _ROW_NAMES)
        params.update(
            columns(
                [(item.first.kind, float(item.first.at), journal_bytes(item.first), item.owner) for item in items],
                ("kind", "at", "data", "owner"),
            )
        )
        params.update(columns([(float(i.expires_at), float(i.lease_s)) for i in items], ("expires_at", "lease_s")))
        async with self._connection() as conn:
            cursor = await conn.execute(sql.CREATE_MANY, params)
            stopping = [_switch_of(found) for found in await cursor.fetchall()]
        answers: list[BaseException | None] = []
        for item in items:
            stop = blocking_switch(stopping, _text(item.row.agent)) if stopping else None
            answers.append(None if stop is None else Killed(stop, item.row.agent))
        return answers

    async def append(
        self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None
    ) -> Signals:
        # The fence, the events and the row in one statement (the lease is renewed by the lease keeper, so an
        # append writes only those); concurrent runs' appends share one statement (postgres_batch.py).
        if row is not None and ("\x00" in row.status or "\x00" in row.reason):
            row = dataclasses.replace(row, status=_text(row.status), reason=_text(row.reason))
        pending = PendingAppend(
            run_id=run_id,
            owner=owner,
            after_seq=after_seq,
            kinds=[event.kind for event in events],
            ats=[float(event.at) for event in events],
            datas=[journal_bytes(event) for event in events],
            row=row,
        )
        if len(self._leased) <= 1:  # alone: nothing to share a statement with
            return await self._append_one(pending)
        return await self._batcher.submit(pending)

    async def _append_one(self, pending: PendingAppend) -> Signals:
        params: dict[str, Any] = {
            "run_id": pending.run_id,
            "owner": pending.owner,
            "after_seq": pending.after_seq,
            "kinds": pending.kinds,
            "ats": pending.ats,
            "datas": pending.datas,
        }
        row = pending.row
        if row is not None:
            params.update(
                status=row.status,
                reason=row.reason,
                steps=row.steps,
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                cost_usd=row.cost_usd,
                updated_at=row.updated_at,
            )
        async with self._connection() as conn:
            try:
                cursor = await conn.execute(sql.APPEND if row is None else sql.APPEND_WITH_ROW, params)
            except psycopg.errors.UniqueViolation as exc:  # another writer appended the same sequence number
                raise LeaseLost(pending.run_id, pending.owner) from exc
            found = await cursor.fetchone()
        if found is None or found[0] != pending.owner or found[1] != pending.after_seq:
            raise await self._refusal(pending, found)
        return _signals_of(found)

    async def _append_many(self, batch: list[PendingAppend]) -> list[Signals | BaseException]:
        async with self._connection() as conn:
            cursor = await conn.execute(sql.APPEND_MANY, append_params(batch))
            fenced = {found[0]: tuple(found[1:]) for found in await cursor.fetchall()}
        answers: list[Signals | BaseException] = []
        for pending in batch:
            found = fenced.get(pending.run_id)
            if found is None or found[0] != pending.owner or found[1] != pending.after_seq:
                answers.append(await self._refusal(pending, found))
            else:
                answers.append(_signals_of(found))
        return answers

    async def _refusal(self, pending: PendingAppend, found: tuple[Any, ...] | None) -> BaseException:
        if found is None:
            async with self._connection() as conn:
                if not await _exists(conn, pending.run_id):
                    return RunNotFound(pending.run_id, self.url)
        return LeaseLost(pending.run_id, pending.owner)

    async def load(self, run_id: str) -> list[Event]:
        async with self._connection() as conn, conn.cursor(binary=True) as cursor:
            await cursor.execute("SELECT data FROM keel_events WHERE run_id = %s ORDER BY seq", (run_id,))
            rows = await cursor.fetchall()
        if not rows:
            raise RunNotFound(run_id, self.url)
        return decode_journal([data for (data,) in rows], run_id=run_id)

    async def list_runs(
        self,
        *,
        limit: int | None = 50,
        status: str | None = None,
        agent: str | None = None,
        since: float | None = None,
    ) -> list[RunRow]:
        clause, params = run_filters(status=status, agent=agent, since=since, mark="%s")
        async with self._connection() as conn:
            cursor = await conn.execute(
                f"SELECT {sql.RUN_COLUMNS} FROM keel_runs {clause} ORDER BY created_at DESC LIMIT %s",
                (*params, limit),  # LIMIT NULL: no limit
            )
            rows = await cursor.fetchall()
        return [_row_of(values) for values in rows]

    async def tool_outcomes(self, *, since: float | None = None, agent: str | None = None) -> list[ToolCounts]:
        clause, params = run_filters(status=None, agent=agent, since=since, mark="%s", table="r.")
        async with self._connection() as conn:
            cursor = await conn.execute(_TOOL_OUTCOMES.format(where=clause), params)
            rows = await cursor.fetchall()
        return [
            ToolCounts(run_id=run_id, tool=tool, calls=int(calls), failures=int(failures))
            for run_id, tool, calls, failures in rows
        ]

    async def acquire_lease(self, run_id: str, owner: str, lease_s: float) -> Lease:
        async with self._connection() as conn:
            while True:
                now = self._clock()
                taken = await conn.execute(
                    sql.TAKE_LEASE,
                    {"run_id": run_id, "owner": owner, "expires_at": now + lease_s, "lease_s": lease_s, "now": now},
                )
                if await taken.fetchone() is not None:
                    self._leased.add(run_id)
                    return Lease(run_id=run_id, owner=owner, expires_at=now + lease_s, lease_s=lease_s)
                held = await (await conn.execute(sql.LEASE_HOLDER, (run_id,))).fetchone()
                if held is None:
                    raise RunNotFound(run_id, self.url)
                holder, expires_at = held
                if holder is not None and holder != owner and expires_at > now:
                    raise RunBusy(run_id, holder, expires_at - now)
                # The holder let go (or its lease ran out) between the two statements: try again.

    async def renew_lease(self, run_id: str, owner: str) -> bool:
        # Only the owner's row matches (on its newest version), so a late renewal never takes back a lease that was
        # released or taken over meanwhile.
        async with self._connection() as conn:
            renewed = await conn.execute(
                "UPDATE keel_leases SET expires_at = %s + lease_s WHERE run_id = %s AND owner = %s",
                (self._clock(), run_id, owner),
            )
            return renewed.rowcount == 1

    async def release_lease(self, run_id: str, owner: str) -> None:
        self._leased.discard(run_id)
        if self._leased:  # other runs are about: share a statement with theirs
            await self._releases.submit((run_id, owner))
        else:
            await self._release_one((run_id, owner))

    async def _release_one(self, lease: tuple[str, str]) -> None:
        async with self._connection() as conn:
            await conn.execute("DELETE FROM keel_leases WHERE run_id = %s AND owner = %s", lease)

    async def _release_many(self, leases: list[tuple[str, str]]) -> list[BaseException | None]:
        async with self._connection() as conn:
            await conn.execute(sql.RELEASE_MANY, columns(leases, ("run_id", "owner")))
        return [None] * len(leases)

    async def request_cancel(self, run_id: str, request: CancelRequest) -> None:
        async with self._connection() as conn:
            cursor = await conn.execute(
                sql.REQUEST_CANCEL, (_text(request.by), _text(request.reason), request.at, run_id)
            )
        if not cursor.rowcount:
            raise RunNotFound(run_id, self.url)

    async def set_switch(self, switch: Switch) -> int:
        params = {
            "scope": switch.scope,
            "target": _text(switch.target),
            "by": _text(switch.by),
            "reason": _text(switch.reason),
            "at": float(switch.at),
        }
        async with self._connection() as conn:
            row = await (await conn.execute(sql.SET_SWITCH, params)).fetchone()
        assert row is not None  # migration 2 wrote the version's one row
        return int(row[0])

    async def clear_switch(self, scope: str, target: str) -> bool:
        async with self._connection() as conn:
            cursor = await conn.execute(sql.CLEAR_SWITCH, (scope, _text(target)))
            return await cursor.fetchone() is not None

    async def switches(self) -> tuple[int, list[Switch]]:
        async with self._connection() as conn:
            rows = await (await conn.execute(sql.SWITCHES)).fetchall()
        return int(rows[0][0]), [_switch_of(row[1:]) for row in rows if row[1] is not None]

    async def close(self) -> None:
        await self._pool.close()


async def _exists(conn: Connection, run_id: str) -> bool:
    return await (await conn.execute("SELECT 1 FROM keel_runs WHERE run_id = %s", (run_id,))).fetchone() is not None


# -- URLs -------------------------------------------------------------------------------------------------------


# -- rows -------------------------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """PostgreSQL's text cannot hold NUL characters; listings show U+FFFD instead (the journal keeps the text)."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


_ROW_NAMES = tuple(name.strip() for name in sql.RUN_COLUMNS.split(","))


def _row_values(row: RunRow) -> tuple[object, ...]:
    return (
        row.run_id,
        _text(row.agent),
        _text(row.status),
        _text(row.reason),
        _text(row.task),
        _text(row.model),
        int(row.steps),
        int(row.input_tokens),
        int(row.output_tokens),
        float(row.cost_usd),
        float(row.created_at),
        float(row.updated_at),
        row.parent_id,
        _text(row.agent_ref),
    )


@dataclass(slots=True)
class _NewRun:
    first: RunStarted
    row: RunRow
    owner: str
    expires_at: float
    lease_s: float


def _switch_of(found: Sequence[Any]) -> Switch:
    """A switch from its columns: scope, target, by, reason, at."""
    return Switch(scope=found[0], target=found[1], by=found[2], reason=found[3], at=found[4])


def _signals_of(found: Sequence[Any]) -> Signals:
    """An append's answer from its fence's columns: owner, last seq, cancel by, reason, at, switch version."""
    cancel = None if found[2] is None else CancelRequest(by=found[2], reason=found[3], at=found[4])
    return signals(cancel, int(found[5]))


def _row_of(values: Sequence[object]) -> RunRow:
    return RunRow(**dict(zip(_ROW_NAMES, values, strict=True)))  # type: ignore[arg-type]
