"""Group commit: the writes of concurrent runs share one transaction, and so one sync to disk.

A write is a function of the connection. ``submit`` queues it and waits; the first write of an event-loop turn
schedules a flush for the next turn, which runs every write queued by then in one transaction. Nobody's
``submit`` returns before the transaction holding its write has committed: an intent is still durable before
its effect; it merely shares its commit with other runs' intents. A run alone on the store commits at once.

The rule for writes: check, then change. A write refuses (raises a ``KeelError``: a lost lease, a busy run)
only before its first change, so a refusal needs no rollback and the rest of the batch commits. Any other
error (the disk, the database) fails the whole batch, and every writer in it learns so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from agentkeel.errors import KeelError

Conn = TypeVar("Conn")
Conn_co = TypeVar("Conn_co", covariant=True)
T = TypeVar("T")


class Transaction(Protocol[Conn_co]):
    """``begin`` a batch, then ``commit`` it (or ``rollback`` if a write or the commit fails)."""

    def begin(self) -> Conn_co: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


class GroupCommit(Generic[Conn]):
    def __init__(
        self,
        transaction: Transaction[Conn],
        *,
        wrap_error: Callable[[BaseException], BaseException],
        alone: Callable[[], bool] = lambda: False,
    ) -> None:
        self._tx = transaction
        self._wrap_error = wrap_error
        self._alone = alone
        """Whether no other run could share a commit now: then a write commits at once, without waiting a turn."""
        self._queue: list[tuple[Callable[[Conn], Any], asyncio.Future[Any]]] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        """Transactions committed so far (for measurements)."""
        self.writes = 0

    async def submit(self, write: Callable[[Conn], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((write, future))
        if len(self._queue) == 1 and self._alone():
            self._flush()  # the future is settled: awaiting it below does not suspend
        elif self._scheduled is not loop:  # none scheduled on this loop (or one on a loop that is gone)
            self._scheduled = loop
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._scheduled is asyncio.get_running_loop():
            self._scheduled = None
        batch, self._queue = self._queue, []
        if not batch:
            return
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            conn = self._tx.begin()
            for write, future in batch:
                try:
                    outcomes.append((future, write(conn), None))
                except KeelError as refused:  # raised before the write changed anything
                    outcomes.append((future, None, refused))
            self._tx.commit()
        except Exception as exc:  # nothing of the batch is durable: every writer learns it
            self._tx.rollback()
            error = self._wrap_error(exc)
            for _, future in batch:
                _settle(future, None, error)
            return
        self.batches += 1
        self.writes += len(batch)
        for future, value, failure in outcomes:
            _settle(future, value, failure)


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
