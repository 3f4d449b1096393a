"""How long a step of reads may hold its events (``driver.py``): one timer per event loop for all of its runs.

A step of reads folds its response and intents into the run's state and appends them with the outcomes, in one
commit. Reads still under way after ``READ_GRACE_S`` have what they hold written at once. A timer for each step
would cost ~10 µs a step with a thousand runs' model turns in the loop's timer heap (measured: 4,000 extra timers a
1,000-run set, +35 ms of CPU); here a step only enters and leaves a dict, oldest first, and one timer wakes for the
oldest.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable

READ_GRACE_S = 0.05
"""How long a step of reads may hold its response and intents before they are written on their own."""


class ReadGrace:
    """The steps of reads under way in one event loop, oldest first, and the one timer that writes the slow ones'."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: dict[object, tuple[float, Callable[[], None]]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def hold(self, holder: object, write_now: Callable[[], None]) -> None:
        """``holder`` holds events from now on; ``write_now()`` is called once the grace is over, unless ``done``."""
        since = self._loop.time()
        self._held[holder] = (since, write_now)
        if self._timer is None:
            self._timer = self._loop.call_at(since + READ_GRACE_S, self._sweep)

    def done(self, holder: object) -> None:
        """``holder``'s reads are over in time (or it wrote what it held): no call for it."""
        self._held.pop(holder, None)

    def _sweep(self) -> None:
        self._timer = None
        due = self._loop.time() - READ_GRACE_S
        held = self._held
        while held:
            holder, (since, write_now) = next(iter(held.items()))
            if since > due:  # the oldest left is not due yet: wake for it
                self._timer = self._loop.call_at(since + READ_GRACE_S, self._sweep)
                return
            del held[holder]
            write_now()


_graces: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ReadGrace] = weakref.WeakKeyDictionary()


def read_grace() -> ReadGrace:
    """The running event loop's ``ReadGrace``."""
    loop = asyncio.get_running_loop()
    grace = _graces.get(loop)
    if grace is None:
        grace = _graces[loop] = ReadGrace(loop)
    return grace
