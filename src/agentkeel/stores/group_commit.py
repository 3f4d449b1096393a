"""Group commit: the writes of concurrent runs share one transaction, and so one sync to disk.

A write is a function of the connection. ``submit`` queues it and waits; the first write of an event-loop turn
schedules a flush for the next turn, which runs every write queued by then in one transaction. Nobody's
``submit`` returns before the transaction holding its write has committed: an intent is still durable before
its effect; it merely shares its commit with other runs' intents. A run alone on the store commits at once.

Frequent writes (appends, new runs, releases) are *batched*: ``submit_to(run_many, item)`` queues data instead
of a function, and the flush hands all the items queued for one ``run_many`` to it at once, so that it can
check and write them with a statement or two for the whole batch rather than a few statements each. Writes of
different runs are independent, so the flush may group them out of their queue order.

Another process may hold the store's write lock (several processes share a SQLite file). ``begin`` then raises
``Busy`` at once instead of waiting inside the database driver, which would stall the event loop and every run on
it: the batch goes back to the head of the queue and is tried again a moment later (0.5 ms, doubling up to 8 ms),
while the loop runs on and more writes join the batch. After ``busy_timeout_s`` of that, the batch fails.

The rule for writes: check, then change. A write refuses (raises a ``KeelError``: a lost lease, a busy run; a
batched one returns the ``KeelError`` in its item's place) only before its first change, so a refusal needs no
rollback and the rest of the batch commits. Any other
error (the disk, the database) fails the whole batch, and every writer in it learns so.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from agentkeel.errors import KeelError, StoreError

Conn = TypeVar("Conn")
Conn_co = TypeVar("Conn_co", covariant=True)
T = TypeVar("T")
Item = TypeVar("Item")


BUSY_RETRY_S = (0.0005, 0.001, 0.002, 0.004, 0.008)
"""How long a batch waits before trying the write lock again, after each refusal in a row (the last one repeats)."""


class Busy(Exception):
    """``Transaction.begin``: another process holds the write lock now; nothing was begun."""


class Transaction(Protocol[Conn_co]):
    """``begin`` a batch (or raise ``Busy``), then ``commit`` it (or ``rollback`` if a write or the commit fails)."""

    def begin(self) -> Conn_co: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...


_Queued = tuple[Callable[[Conn, list[Any]], list[Any]], Any, "asyncio.Future[Any]"]
"""A queued write: its batch function, its item, the future its writer awaits."""


class GroupCommit(Generic[Conn]):
    def __init__(
        self,
        transaction: Transaction[Conn],
        *,
        wrap_error: Callable[[BaseException], BaseException],
        alone: Callable[[], bool] = lambda: False,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self._tx = transaction
        self._busy_timeout_s = busy_timeout_s
        self._busy_since: float | None = None  # when the write lock first refused the batch now waiting for it
        self._busy_tries = 0
        self._wrap_error = wrap_error
        self._alone = alone
        """Whether no other run could share a commit now: then a write commits at once, without waiting a turn."""
        self._queue: list[_Queued[Conn]] = []
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
            self._flush()  # the future is settled (unless the lock is busy): awaiting it below does not suspend
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
        except Busy as busy:
            self._wait_for_lock(batch, busy)
            return
        except Exception as exc:
            self._fail(batch, exc)
            return
        self._busy_since, self._busy_tries = None, 0
        try:
            for run_many, indexes in kinds.items():
                values = run_many(conn, [batch[index][1] for index in indexes])
                for index, value in zip(indexes, values, strict=True):
                    outcomes[index] = value
            self._tx.commit()
        except Exception as exc:  # nothing of the batch is durable: every writer learns it
            self._tx.rollback()
            self._fail(batch, exc)
            return
        self.batches += 1
        self.writes += len(batch)
        for (_, _, future), value in zip(batch, outcomes, strict=True):
            if isinstance(value, KeelError):  # refused before it changed anything
                _settle(future, None, value)
            else:
                _settle(future, value, None)

    def _wait_for_lock(self, batch: list[_Queued[Conn]], busy: Busy) -> None:
        """The batch goes back to the head of the queue and tries again shortly; the loop runs on meanwhile."""
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
        if now - self._busy_since >= self._busy_timeout_s:
            self._busy_since, self._busy_tries = None, 0
            error = StoreError(
                f"another process held the store's write lock for {self._busy_timeout_s:g} s ({busy}): a long "
                "transaction or a stuck process; nothing of this write was stored"
            )
            self._fail(batch, error)
            return
        self._queue[:0] = batch
        delay = BUSY_RETRY_S[min(self._busy_tries, len(BUSY_RETRY_S) - 1)]
        self._busy_tries += 1
        loop = asyncio.get_running_loop()
        self._scheduled = loop  # writes queued meanwhile wait for this retry rather than scheduling their own
        loop.call_later(delay, self._flush)

    def _fail(self, batch: list[_Queued[Conn]], exc: BaseException) -> None:
        error = self._wrap_error(exc)
        for _, _, future in batch:
            _settle(future, None, error)


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
