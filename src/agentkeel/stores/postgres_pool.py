"""A few PostgreSQL connections shared by one store's calls, in one event loop.

Why not ``psycopg_pool``: its maintenance tasks survive cancellation, so an event loop that ends while such a pool
is open waits for them forever, and ``asyncio.run(agent.run(...))`` (``Agent.run_sync``) ends that way, since
nobody closes a store an agent opened from a URL. This pool has no task of its own. A call takes an idle
connection or opens one, at most ``size`` at once (later calls wait for one to come back); a connection comes back
to the idle list only if it is healthy and outside any transaction, otherwise it is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from agentkeel.errors import StoreError

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


class ConnectionPool:
    """Up to ``size`` autocommit connections to ``conninfo``, opened when needed and kept while idle."""

    def __init__(self, conninfo: str, size: int) -> None:
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._closed = False

    async def connect(self) -> Connection:
        """A new connection, outside the pool (``give`` hands it over)."""
        return await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)

    async def give(self, conn: Connection) -> None:
        """Keep ``conn`` for later calls, if it can serve them; else close it."""
        if self._closed or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            await conn.close()
        else:
            self._idle.append(conn)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A connection for one call: its own, until the call gives it back."""
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self.connect()
            try:
                yield conn
            finally:
                await self.give(conn)

    async def close(self) -> None:
        """Close the idle connections (from any event loop: closing does no I/O); those in use close when their
        calls give them back."""
        self._closed = True
        while self._idle:
            await self._idle.pop().close()


class LoopPool:
    """A ``ConnectionPool`` for the running event loop, opened at the first call: its first connection is
    ``prepare``d (migrations, tables) before any call uses the pool, under a lock so that concurrent first calls
    open one pool. A new event loop (``asyncio.run`` again) gets a new pool: connections belong to one loop."""

    def __init__(
        self,
        conninfo: str,
        size: int,
        *,
        prepare: Callable[[Connection], Awaitable[None]],
        unreachable: Callable[[psycopg.Error], str],
        unprepared: Callable[[psycopg.Error], str],
    ) -> None:
        """``unreachable`` and ``unprepared`` say, for a person, what failed: connecting, or preparing."""
        self._conninfo = conninfo
        self._size = size
        self._prepare = prepare
        self._unreachable = unreachable
        self._unprepared = unprepared
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._pool: ConnectionPool | None = None

    async def ready(self) -> ConnectionPool:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # first use, or a new event loop
            if self._pool is not None:
                await self._pool.close()
            self._loop, self._opening, self._pool = loop, asyncio.Lock(), None
        if self._pool is None:
            async with self._opening:
                if self._pool is None:
                    self._pool = await self._open()
        return self._pool

    async def _open(self) -> ConnectionPool:
        pool = ConnectionPool(self._conninfo, self._size)
        try:
            conn = await pool.connect()
        except psycopg.Error as exc:
            raise StoreError(self._unreachable(exc)) from exc
        try:
            await self._prepare(conn)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, psycopg.Error):
                raise StoreError(self._unprepared(exc)) from exc
            raise
        await pool.give(conn)
        return pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
