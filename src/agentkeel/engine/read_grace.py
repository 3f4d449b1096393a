"""How long a step of reads may hold its events (``run_journal.py``): one clock per event loop for all its runs.

A step of reads folds its response and intents into the run's state and appends them with the outcomes, in one
commit. A step still holding them after ``READ_GRACE_S`` has them written at once. The clock ticks every
``READ_GRACE_S`` while a driver that has held a step is running in the loop; a step notes the tick it began in (an
attribute store), and a tick finds the steps that began two ticks ago or earlier, so a slow step is written after
one to two graces. Per step that costs nothing measurable. A timer a step cost ~10 µs with a thousand runs' model
turns in the loop's timer heap, and a dict of held steps with their start times 1.5 to 2 µs a step in place
(paired runs of the per-step bench).
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

READ_GRACE_S = 0.05
"""How long a step of reads may hold its response and intents before they are written on their own (at most twice
as long: see the module's docstring)."""


class Holder(Protocol):
    held_tick: int | None
    """The tick its step of reads began in; None while it holds nothing."""

    def write_held(self) -> None:
        """The grace is over: write what is held now."""


class ReadGrace:
    """The runs of one event loop that hold steps of reads (their journals), and the clock that has a slow step
    written."""

    def __init__(self) -> None:
        # (no reference to the loop: the loop keys this object in a weak dict, which a reference back would defeat)
        self._holders: set[Holder] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.tick = 0
        """Which period of ``READ_GRACE_S`` it is: a step notes it as its ``held_tick``."""

    def join(self, holder: Holder) -> None:
        """``holder`` may hold steps from now on (until ``leave``): the clock runs."""
        self._holders.add(holder)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(READ_GRACE_S, self._sweep)

    def leave(self, holder: Holder) -> None:
        """``holder`` holds no more steps (its drive is over); the clock stops with the last one."""
        self._holders.discard(holder)
        if not self._holders and self._timer is not None:
            self._timer.cancel()
            self._timer = None  # (nor through the timer: a handle refers to its loop)

    def _sweep(self) -> None:
        self.tick += 1
        due = self.tick - 2  # a step that began in this tick or earlier has held for a whole period at least
        for holder in self._holders:
            began = holder.held_tick
            if began is not None and began <= due:
                holder.held_tick = None
                holder.write_held()
        self._timer = asyncio.get_running_loop().call_later(READ_GRACE_S, self._sweep) if self._holders else None


_graces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadGrace] = weakref.WeakKeyDictionary()


def read_grace() -> ReadGrace:
    """The running event loop's ``ReadGrace``."""
    loop = asyncio.get_running_loop()
    grace = _graces.get(loop)
    if grace is None:
        grace = _graces[loop] = ReadGrace()
    return grace
