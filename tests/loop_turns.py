"""How long the event loop's longest turn was while a test let it turn: a loop frozen inside a blocking call shows
that call's whole duration."""

from __future__ import annotations

import asyncio
import time


async def longest_turn(turns: int = 50) -> float:
    """Let the loop turn ``turns`` times; the longest gap between two of them, in seconds."""
    longest, last = 0.0, time.monotonic()
    for _ in range(turns):
        await asyncio.sleep(0)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    return longest
