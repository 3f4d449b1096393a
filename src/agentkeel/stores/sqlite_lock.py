"""A SQLite file's write lock, taken without stalling the event loop.

SQLite lets one connection write at a time, across processes. A connection that asks for the write lock while
another holds it waits inside the driver's busy handler, on the calling thread: on an event loop's thread that
freezes every run and every consumer of the process until the other process commits. Here the lock is asked for
without waiting (``Busy`` at once), and the caller waits on a timer instead: the store's group commit re-queues
its batch (``group_commit.py``), the bus sleeps (``when_free``). Either gives up after its busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from agentkeel.errors import StoreError
from agentkeel.stores.group_commit import BUSY_RETRY_S, Busy

T = TypeVar("T")


def check_busy_timeout(seconds: float) -> float:
    """``seconds``, if it is a time a write may wait for the lock (above 0, finite); else a ``StoreError``."""
    if not 0 < seconds < float("inf"):
        raise StoreError(f"busy_timeout_s={seconds!r}: give a number of seconds above 0, e.g. 30")
    return seconds


def begin_immediate(db: sqlite3.Connection, wait_ms: int | None) -> None:
    """``BEGIN IMMEDIATE`` now, or ``Busy`` if another connection holds the write lock (nothing begun).

    ``wait_ms``: the busy timeout the connection's other statements keep (it is lifted around the ``BEGIN``, two
    statements more); ``None`` for a connection opened with none (``timeout=0``), which never waits anyway."""
    if wait_ms is None:
        _begin(db)
        return
    db.execute("PRAGMA busy_timeout=0")
    try:
        _begin(db)
    finally:
        db.execute(f"PRAGMA busy_timeout={wait_ms}")


def _begin(db: sqlite3.Connection) -> None:
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if is_busy(exc):
            raise Busy(str(exc)) from exc
        raise


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite refused because another connection holds a lock it needs (it may be tried again)."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_BUSY


async def when_free(
    attempt: Callable[[], T], lock: threading.Lock, timeout_s: float, what: str, *, keep: bool = False
) -> T:
    """``attempt()`` holding ``lock`` (the connection's, in this process), and its value. ``keep``: return still
    holding the lock (``attempt`` began a transaction, its caller commits and releases); else it is released.

    While another process holds a lock SQLite needs (``Busy``, or the driver's ``SQLITE_BUSY``), or another task of
    this process the connection, wait on timers (0.5 ms, doubling up to 8 ms) and try again; after ``timeout_s`` of
    that, ``Busy`` naming ``what``. ``attempt`` must change nothing before it can be refused."""
    started = time.monotonic()
    tries = 0
    while True:
        if lock.acquire(blocking=False):
            try:
                value = attempt()
            except (Busy, sqlite3.OperationalError) as exc:
                lock.release()
                if not isinstance(exc, Busy) and not is_busy(exc):
                    raise
            except BaseException:
                lock.release()
                raise
            else:
                if not keep:
                    lock.release()
                return value
        if time.monotonic() - started >= timeout_s:
            raise Busy(f"another process held a lock on {what} for {timeout_s:g} s")
        await asyncio.sleep(BUSY_RETRY_S[min(tries, len(BUSY_RETRY_S) - 1)])
        tries += 1
