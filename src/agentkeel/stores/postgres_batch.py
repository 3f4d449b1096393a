"""Group commit for PostgreSQL: the writes of concurrent runs in one statement, one round trip, one commit.

Writes of one kind (new runs, appends, lease releases) queued in one event-loop turn go out together: ``run_many``
writes the whole batch in one statement and answers per item (a value, or the error that refused that item: an
append keeps its own fence, so a run whose lease or journal length does not fit writes nothing and gets
``LeaseLost`` while the others commit). If the batch statement itself fails (a run id already taken, say), each
item is written again on its own (``run_one``), so that every caller gets its own answer.

At most ``IN_FLIGHT`` statements of a kind are out at once: what queues meanwhile goes in the next one as soon as
one comes back, so the busier the store, the larger the statements (and the fewer round trips). Two rather than
one: while the server works on one batch the next is already on its way (1,000 concurrent runs: 0.83 s against
0.89 s, medians of three alternated runs of `bench.concurrency`); a run has one write out at a time, so two
statements never carry writes of the same run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agentkeel.stores.base import RunRow

Item = TypeVar("Item")
R = TypeVar("R")

IN_FLIGHT = 2


@dataclass(kw_only=True, slots=True)
class PendingAppend:
    run_id: str
    owner: str
    after_seq: int
    kinds: list[str]
    ats: list[float]
    datas: list[bytes]
    row: RunRow | None


class Batcher(Generic[Item, R]):
    def __init__(
        self,
        *,
        run_many: Callable[[list[Item]], Awaitable[list[R | BaseException]]],
        run_one: Callable[[Item], Awaitable[R]],
    ) -> None:
        self._run_many = run_many
        self._run_one = run_one
        self._queue: list[tuple[Item, asyncio.Future[R]]] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._taking = False  # a statement's task is made and has not yet taken the queue: it will take all of it
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0
        """Batch statements that succeeded so far (for measurements)."""

    async def submit(self, item: Item) -> R:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (the store's pool is remade too): nothing is out on it
            self._loop, self._queue, self._scheduled, self._in_flight, self._taking = loop, [], None, 0, False
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if self._scheduled is not loop and self._in_flight < IN_FLIGHT:
            self._scheduled = loop
            loop.call_soon(self._start)
        return await future

    def _start(self) -> None:
        self._scheduled = None
        # A start finds its task's batch as late as it can: what queues before the task runs goes with it. So a
        # second start (a scheduled one and a finished statement's, in one turn) leaves a task not yet run alone.
        if self._queue and not self._taking and self._in_flight < IN_FLIGHT:
            self._in_flight += 1
            self._taking = True
            task = asyncio.get_running_loop().create_task(self._flush())
            task.add_done_callback(self._finished)

    def _finished(self, _: asyncio.Task[None]) -> None:
        self._in_flight -= 1
        self._start()  # what queued meanwhile

    async def _flush(self) -> None:
        batch, self._queue, self._taking = self._queue, [], False
        if len(batch) == 1:
            await self._alone(*batch[0])
            return
        try:
            answers = await self._run_many([item for item, _ in batch])
        except Exception:  # e.g. one item colliding with a row already there: each on its own, to say which
            await asyncio.gather(*(self._alone(item, future) for item, future in batch))
            return
        self.batches += 1
        for (_, future), answer in zip(batch, answers, strict=True):
            if isinstance(answer, BaseException):
                _settle(future, None, answer)
            else:
                _settle(future, answer, None)

    async def _alone(self, item: Item, future: asyncio.Future[R]) -> None:
        try:
            _settle(future, await self._run_one(item), None)
        except Exception as exc:
            _settle(future, None, exc)


def append_params(batch: list[PendingAppend]) -> dict[str, Any]:
    """``APPEND_MANY``'s arrays."""
    params: dict[str, list[Any]] = {
        key: []
        for key in (
            "run_ids",
            "owners",
            "after_seqs",
            "e_run_ids",
            "e_seqs",
            "e_kinds",
            "e_ats",
            "e_datas",
            "w_run_ids",
            "w_status",
            "w_reason",
            "w_steps",
            "w_input",
            "w_output",
            "w_cost",
            "w_updated",
        )
    }
    for pending in batch:
        params["run_ids"].append(pending.run_id)
        params["owners"].append(pending.owner)
        params["after_seqs"].append(pending.after_seq)
        for offset, (kind, at, data) in enumerate(zip(pending.kinds, pending.ats, pending.datas, strict=True), 1):
            params["e_run_ids"].append(pending.run_id)
            params["e_seqs"].append(pending.after_seq + offset)
            params["e_kinds"].append(kind)
            params["e_ats"].append(at)
            params["e_datas"].append(data)
        row = pending.row
        if row is not None:
            params["w_run_ids"].append(pending.run_id)
            params["w_status"].append(row.status)
            params["w_reason"].append(row.reason)
            params["w_steps"].append(int(row.steps))
            params["w_input"].append(int(row.input_tokens))
            params["w_output"].append(int(row.output_tokens))
            params["w_cost"].append(float(row.cost_usd))
            params["w_updated"].append(float(row.updated_at))
    return params


def columns(rows: list[tuple[Any, ...]], names: tuple[str, ...]) -> dict[str, list[Any]]:
    """Rows of values as one array per column, for statements that ``unnest`` them."""
    if not rows:
        return {name: [] for name in names}
    return {name: list(values) for name, values in zip(names, zip(*rows, strict=True), strict=True)}


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
