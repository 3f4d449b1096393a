"""Group commit for PostgreSQL: the appends of concurrent runs in one statement, one round trip, one commit.

Appends queued in one event-loop turn are written together by ``APPEND_MANY`` (each run keeps its own fence: a
run whose lease or journal length does not fit writes nothing and gets ``LeaseLost``, the others commit). If the
batch statement itself fails, each append is retried on its own, so that every caller gets its own answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentkeel.stores.base import CancelRequest, RunRow


@dataclass(kw_only=True, slots=True)
class PendingAppend:
    run_id: str
    owner: str
    after_seq: int
    kinds: list[str]
    ats: list[float]
    datas: list[bytes]
    row: RunRow | None
    future: asyncio.Future[CancelRequest | None]


Fenced = dict[str, tuple[Any, ...]]
"""Per run id: (owner, journal length, cancel by, cancel reason, cancel at) as the batch's fence read them."""


class AppendBatcher:
    def __init__(
        self,
        *,
        run_batch: Callable[[dict[str, Any]], Awaitable[Fenced]],
        run_one: Callable[[PendingAppend], Awaitable[CancelRequest | None]],
        refuse: Callable[[PendingAppend, tuple[Any, ...] | None], Awaitable[BaseException]],
    ) -> None:
        self._run_batch = run_batch
        self._run_one = run_one
        self._refuse = refuse
        self._queue: list[PendingAppend] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None
        self.batches = 0

    async def submit(self, pending: PendingAppend) -> CancelRequest | None:
        loop = asyncio.get_running_loop()
        self._queue.append(pending)
        if self._scheduled is not loop:
            self._scheduled = loop
            loop.call_soon(lambda: loop.create_task(self._flush()))
        return await pending.future

    async def _flush(self) -> None:
        self._scheduled = None
        batch, self._queue = self._queue, []
        if len(batch) == 1:
            await self._alone(batch[0])
            return
        try:
            fenced = await self._run_batch(_params(batch))
        except Exception:  # e.g. a stale journal length colliding on (run id, seq): each on its own, to say who
            await asyncio.gather(*(self._alone(pending) for pending in batch))
            return
        self.batches += 1
        for pending in batch:
            found = fenced.get(pending.run_id)
            if found is None or found[0] != pending.owner or found[1] != pending.after_seq:
                _settle(pending, None, await self._refuse(pending, found))
            elif found[2] is None:
                _settle(pending, None, None)
            else:
                _settle(pending, CancelRequest(by=found[2], reason=found[3], at=found[4]), None)

    async def _alone(self, pending: PendingAppend) -> None:
        try:
            _settle(pending, await self._run_one(pending), None)
        except Exception as exc:
            _settle(pending, None, exc)


def _params(batch: list[PendingAppend]) -> dict[str, Any]:
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
            params["w_steps"].append(row.steps)
            params["w_input"].append(row.input_tokens)
            params["w_output"].append(row.output_tokens)
            params["w_cost"].append(row.cost_usd)
            params["w_updated"].append(row.updated_at)
    return params


def _settle(pending: PendingAppend, value: CancelRequest | None, error: BaseException | None) -> None:
    if pending.future.cancelled():
        return
    if error is None:
        pending.future.set_result(value)
    else:
        pending.future.set_exception(error)
