"""One run's commits, for its driver: fold the events into the state, append them, heed what the append reports.

``commit`` folds first and appends after; nothing with an effect acts on the new state before the append returns,
and a failed append propagates (the driver stops), so no effect follows from a state the journal does not hold.
The store answers each append with its signals: a kill switch set or lifted anywhere (the controls reload and may
ask the run to stop), a cancel request for this run. Both end up in ``cancel``, which the driver honours before
its next model call, tool call or recovery.

A step of reads (``hold`` … ``settle``) has its commits folded and held, and appended together when it settles:
one append a step instead of two (``driver.py`` says why that is safe). A step still holding after the grace
(``read_grace.py``) has what it holds written at once; commits that follow wait for that write.
"""

from __future__ import annotations

import asyncio
import time

from agentkeel.core.events import Event
from agentkeel.core.state import RunState
from agentkeel.engine.controls import Controls
from agentkeel.engine.read_grace import ReadGrace, read_grace
from agentkeel.observe.setup import current_live
from agentkeel.stores.base import CancelRequest, RunRow, Store

ROW_REFRESH_S = 0.5
"""How stale a live run's figures (steps, tokens, cost) may be in listings such as ``keel runs``."""


class RunJournal:
    def __init__(
        self, *, store: Store, state: RunState, owner: str, controls: Controls, cancel: CancelRequest | None
    ) -> None:
        self._store = store
        self._state = state
        self._owner = owner
        self._controls = controls
        self.cancel = cancel
        """A pending cancel request (or a kill switch's): honoured before the next model call, tool call or
        recovery."""
        self.concurrent = False
        """Whether tool calls run side by side: their commits then go one at a time, in sequence order."""
        self._lock: asyncio.Lock | None = None  # (made when first needed)
        self._row_status = ""  # the run row as last written: its status, and when
        self._row_written = 0.0
        if state.last_seq == 1:  # a new run: create_run has just written its row (a resume journals RunResumed first)
            self._row_status, self._row_written = state.status, time.monotonic()
        self._held: list[Event] | None = None  # a step of reads under way: its events, folded, not yet appended
        self._held_after = 0  # the journal's length before them
        self._held_listed = False
        self._held_write: asyncio.Task[None] | None = None  # the grace is over: what was held, being written
        self._grace: ReadGrace | None = None  # the event loop's, joined at the first step of reads
        self.held_tick: int | None = None
        """The grace's tick the step of reads under way began in (None: nothing held)."""

    async def commit(self, events: list[Event], *, listed: bool = True) -> None:
        """Fold the events into the state and append them. ``listed=False``: the run row need not be refreshed
        (it still is when the status changes)."""
        if self.concurrent:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                await self._commit_now(events, listed)
        else:
            await self._commit_now(events, listed)

    async def _commit_now(self, events: list[Event], listed: bool) -> None:
        held = self._held
        if held is None and self._held_write is not None:
            await self._held_write  # what a step of slow reads held is on its way: this commit follows it
        after = self._fold(events)
        if held is not None:  # a step of reads under way: appended with its outcomes
            held.extend(events)
            self._held_listed = self._held_listed or listed
            return
        await self._write(after, events, listed)

    def _fold(self, events: list[Event]) -> int:
        """Fold the events into the state; returns the journal's length before them."""
        state = self._state
        after = state.last_seq
        for event in events:
            state.apply(event)
        self._controls.observe(state, events)
        return after

    async def _write(self, after: int, events: list[Event], listed: bool) -> None:
        """Append events already folded into the state, after journal position ``after``; heed the signals."""
        state = self._state
        controls = self._controls
        row = None
        if state.status != self._row_status or listed:
            # The run row (for listings) is rewritten when the status changes, else at most every ROW_REFRESH_S.
            now = time.monotonic()
            if state.status != self._row_status or now - self._row_written >= ROW_REFRESH_S:
                row = RunRow.of(state)
                self._row_status, self._row_written = state.status, now
        signals = await self._store.append(state.run_id, self._owner, after, events, row)
        live = current_live()
        if live is not None:
            await live.committed(self._store, state.run_id, after, events)
        if signals.switches != controls.switch_version:  # a kill switch was set or cleared somewhere
            await controls.reload(self._store)
            if self.cancel is None:
                self.cancel = controls.stop_request(state.agent)
        if signals.cancel is not None and self.cancel is None:
            self.cancel = signals.cancel

    # -- a step of reads ------------------------------------------------------------------------------------

    def hold(self, events: list[Event]) -> None:
        """A step of reads begins with ``events`` (its response and intents): they and the commits that follow are
        folded and held, until ``settle``. ``events`` becomes the journal's: the caller lets go of it."""
        self._held_after, self._held_listed = self._fold(events), False
        self._held = events
        grace = self._grace
        if grace is None:
            grace = self._grace = read_grace()
            grace.join(self)
        self.held_tick = grace.tick

    async def settle(self, *, append: bool) -> None:
        """The step of reads is over: what it holds is appended (``append=False``: the step failed, and it is
        dropped). A write the grace began is waited for either way: none is left behind."""
        self.held_tick = None
        held, self._held = self._held, None
        writing, self._held_write = self._held_write, None
        if writing is not None:
            await writing
        if held and append:
            await self._write(self._held_after, held, self._held_listed)

    def write_held(self) -> None:
        """The grace is over and the reads go on: what is held is written now (later commits wait for it)."""
        held, self._held = self._held, None
        if held:
            self._held_write = asyncio.get_running_loop().create_task(
                self._write(self._held_after, held, self._held_listed)
            )

    def close(self) -> None:
        """The drive is over: no more steps to watch."""
        if self._grace is not None:
            self._grace.leave(self)
