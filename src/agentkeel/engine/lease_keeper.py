"""Keeping leases alive: one task renews the leases of every run an agent drives in this process.

A driver's lease must outlive its longest call (a slow tool, a model that takes a minute). Rather than a
heartbeat task per run, a keeper renews all the leases it holds every third of the lease's length, concurrently,
so that a store with group commit renews thousands of them in one transaction. A renewal only extends a lease
its owner still holds (it never recreates one a driver has just released); one that fails (another process took
the run over) is not acted on here: the driver's next append is fenced and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib

from agentkeel.stores.base import Store


class LeaseKeeper:
    def __init__(self, store: Store, lease_s: float) -> None:
        self._store = store
        self._lease_s = lease_s
        self._held: dict[str, str] = {}  # run id -> owner
        self._task: asyncio.Task[None] | None = None

    def hold(self, run_id: str, owner: str) -> None:
        self._held[run_id] = owner
        task = self._task
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            self._task = asyncio.get_running_loop().create_task(self._renew(), name="agentkeel lease keeper")

    def drop(self, run_id: str) -> None:
        self._held.pop(run_id, None)
        task = self._task
        if not self._held and task is not None:  # nothing left to renew: let the task go now, not a sleep later
            self._task = None  # (the keeper keeps no reference to it: no cycle keeps the store alive)
            if not task.done():
                task.cancel()

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self._lease_s / 3)
            held = list(self._held.items())
            with contextlib.suppress(Exception):  # a lost lease surfaces at the driver's next append
                await asyncio.gather(
                    *(self._store.renew_lease(run_id, owner) for run_id, owner in held), return_exceptions=True
                )
