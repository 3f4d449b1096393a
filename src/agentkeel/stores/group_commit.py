"""Group commit: the writes of concurrent runs share one transaction, and so one sync to disk.

A write is a function of the connection. ``submit`` queues it and waits; the first write of an event-loop turn
schedules a flush for the next turn, which runs every write queued by then in one transaction. Nobody's
``submit`` returns before the transaction holding its write has committed: an intent is still durable before
its effect; it merely shares its commit with other runs' intents. A run alone on the store commits at once.

Frequent writes (appends, new runs, releases) are *batched*: ``submit_to(run_many, item)`` queues data instead
of a function, and the flush hands all the items queued for one ``run_many`` to it at once, so that it can
check and write them with a statement or two for the whole batch rather than a few statements each. Writes of
different runs are independent, so the flush may group them out of their queue order.

The rule for writes: check, then change. A write refuses (raises a ``KeelError``: a lost lease, a busy run; a
batched one returns the ``KeelError`` in its item's place) only before its first change, so a refusal needs no
rollback and the rest of the batch commits. Any other
error (the disk, the database) fails the whole batch, and every writer in it learns so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from agentkeel.errors import KeelError, StoreError

Conn = TypeVar("Conn")
Conn_co = TypeVar("Conn_co", covariant=True)
T = TypeVar("T")
Item = TypeVar("Item")


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
        self._queue: list[tuple[Callable[[Conn, list[Any]], list[Any]], Any, asyncio.Future[Any]]] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.batches = 0
        """Transactions committed so far (for measurements)."""
        self.writes = 0

    async def submit(self, write: Callable[[Conn], T]) -> T:
        """Run ``write`` in the next transaction; its value once that transaction has committed."""
        value: T = await self.submit_to(_each, write)
        return value

    async def submit_to(self, run_many: Callable[[Conn, list[Item]], list[Any]], item: Item) -> Any:
        """Queue ``item`` for ``run_many``; its value once the transaction holding it has committed.

        ``run_many(conn, items)`` writes a batch of items and returns, per item and in order, its value or the
        ``KeelError`` that refused it.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((run_many, item, future))
        if len(self._queue) == 1 and self._alone():
            self._flush()  # the future is settled: awaiting it below does not suspend
        elif self._scheduled is not loop:  # none scheduled on this loop (or one on a loop that is gone)
            self._scheduled = loop
            loop.call_soon(self._flush)
        return await future

    def close(self) -> None:
        """No more writes: any still queued (their callers gone, e.g. a cancelled renewal) fail with a sentence."""
        self._closed = True
        batch, self._queue = self._queue, []
        error = StoreError("the store was closed before this write committed")
        for _, _, future in batch:
            _settle(future, None, error)

    def _flush(self) -> None:
        if self._scheduled is asyncio.get_running_loop():
            self._scheduled = None
        batch, self._queue = self._queue, []
        if not batch:
            return
        if self._closed:
            for _, _, future in batch:
                _settle(future, None, StoreError("the store is closed"))
            return
        kinds: dict[Callable[[Conn, list[Any]], list[Any]], list[int]] = {}
        for index, (run_many, _, _) in enumerate(batch):
            kinds.setdefault(run_many, []).append(index)
        outcomes: list[Any] = [None] * len(batch)
        try:
            conn = self._tx.begin()
            for run_many, indexes in kinds.items():
                values = run_many(conn, [batch[index][1] for index in indexes])
                for index, value in zip(indexes, values, strict=True):
                    outcomes[index] = value
            self._tx.commit()
        except Exception as exc:  # nothing of the batch is durable: every writer learns it
            self._tx.rollback()
            error = self._wrap_error(exc)
            for _, _, future in batch:
                _settle(future, None, error)
            return
        self.batches += 1
        self.writes += len(batch)
        for (_, _, future), value in zip(batch, outcomes, strict=True):
            if isinstance(value, KeelError):  # refused before it changed anything
                _settle(future, None, value)
            else:
                _settle(future, value, None)


def _each(conn: Any, writes: list[Callable[[Any], Any]]) -> list[Any]:
    """Writes given as functions, one after the other."""
    values: list[Any] = []
    for write in writes:
        try:
            values.append(write(conn))
        except KeelError as refused:  # raised before the write changed anything
            values.append(refused)
    return values


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
