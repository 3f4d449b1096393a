"""The durable bus (the default): topics in a SQLite file, WAL, safe for several processes on one machine.

Its tables (``keel_bus_*``) can share the store's file or live in a file of their own. Every operation is one
short ``BEGIN IMMEDIATE`` transaction, so a delivery, a settlement and the outputs it publishes commit together or
not at all. A consumer in another process learns of new messages by polling (``consume(block_s=...)``).

``trim`` works in batches of its own short transactions (``_TRIM_BATCH`` rows each), so publishers and consumers
in other processes wait for one batch at most, never for the whole clean-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from agentkeel.bus.base import (
    DEAD_SUFFIX,
    Message,
    Outgoing,
    TopicStats,
    TrimReport,
    check_topic,
    dead_message,
    dead_topic,
    new_message,
    outgoing_message,
    topic_stats,
)
from agentkeel.bus.rows import row_message, row_seq
from agentkeel.errors import StoreError
from agentkeel.stores.group_commit import Busy
from agentkeel.stores.sqlite_lock import begin_immediate, check_busy_timeout, when_free

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS keel_bus_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
    "topic TEXT NOT NULL, payload TEXT NOT NULL, correlation_id TEXT NOT NULL, causation_id TEXT, "
    "headers TEXT NOT NULL, published_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS keel_bus_messages_topic ON keel_bus_messages (topic, seq)",
    # A group's cursor: the seq of the last message of the topic it was given.
    "CREATE TABLE IF NOT EXISTS keel_bus_groups (topic TEXT NOT NULL, grp TEXT NOT NULL, "
    "cursor INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (topic, grp))",
    # Deliveries not settled yet; consumer NULL: given back by nack, first in line for the group's next consume.
    "CREATE TABLE IF NOT EXISTS keel_bus_pending (grp TEXT NOT NULL, seq INTEGER NOT NULL, topic TEXT NOT NULL, "
    "consumer TEXT, attempts INTEGER NOT NULL, delivered_at REAL NOT NULL, error TEXT NOT NULL DEFAULT '', "
    "PRIMARY KEY (grp, seq))",
    "CREATE TABLE IF NOT EXISTS keel_bus_handled (grp TEXT NOT NULL, message_id TEXT NOT NULL, at REAL NOT NULL, "
    "PRIMARY KEY (grp, message_id))",
)
_COLUMNS = "seq, id, topic, payload, correlation_id, causation_id, headers, published_at"
_POLL_S = 0.05
_TRIM_BATCH = 500

# The next batch of messages published before the cut-off (after seq :after), each with whether it is a dead
# letter and whether a group still needs it: it is on a topic no group reads (dead letters need no reader), a
# group's cursor has not reached it, or a group holds it pending.
_TRIM_CANDIDATES = """SELECT m.seq, substr(m.topic, -:suffix_len) = :suffix AS dead,
    (substr(m.topic, -:suffix_len) <> :suffix AND NOT EXISTS (SELECT 1 FROM keel_bus_groups g WHERE g.topic = m.topic))
    OR EXISTS (SELECT 1 FROM keel_bus_groups g WHERE g.topic = m.topic AND g.cursor < m.seq)
    OR EXISTS (
        SELECT 1 FROM keel_bus_groups g JOIN keel_bus_pending p ON p.grp = g.grp AND p.seq = m.seq
        WHERE g.topic = m.topic
    ) AS needed
FROM keel_bus_messages m
WHERE m.seq > :after AND m.published_at < :before AND (:dead OR substr(m.topic, -:suffix_len) <> :suffix)
ORDER BY m.seq LIMIT :batch"""

# The next batch of handled-id records in key order (after :grp, :message_id), each with whether it goes: older
# than the cut-off and its message gone.
_TRIM_HANDLED = """SELECT h.grp, h.message_id,
    h.at < :before AND NOT EXISTS (SELECT 1 FROM keel_bus_messages m WHERE m.id = h.message_id)
FROM keel_bus_handled h WHERE (h.grp, h.message_id) > (:grp, :message_id)
ORDER BY h.grp, h.message_id LIMIT :batch"""


class SQLiteBus:
    """Topics, groups, deliveries and the handled-ids record in a SQLite file."""

    def __init__(
        self, path: str | Path, *, busy_timeout_s: float = 30.0, clock: Callable[[], float] = time.time
    ) -> None:
        """``busy_timeout_s``: how long an operation waits for the file's write lock while another process holds
        it (the event loop runs on meanwhile) before it fails."""
        self.path = Path(path)
        self.url = f"sqlite:///{path}"
        self._clock = clock
        self._lock = threading.Lock()
        self._busy_timeout_s = check_busy_timeout(busy_timeout_s)
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            with self._lock:  # opening (not on a running loop's business): the driver's own wait is fine here
                self._db.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute("COMMIT")
            # From here no statement waits inside the driver: a refusal is retried on a timer (sqlite_lock.py).
            self._db.execute("PRAGMA busy_timeout=0")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open the bus at {self.url}: {exc}") from exc

    def _write(self) -> _WriteTransaction:
        """``async with self._write() as db``: one short write transaction. The body must not await: it holds the
        connection's lock. Waiting for another process's write lock happens on timers, not in the driver
        (``stores/sqlite_lock.py``)."""
        return _WriteTransaction(self)

    def _begin(self) -> None:
        begin_immediate(self._db, None)

    async def _read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """``query(connection)``'s value; a read another process's lock refuses is tried again on a timer."""
        try:
            return await when_free(lambda: query(self._db), self._lock, self._busy_timeout_s, f"the bus at {self.url}")
        except Busy as exc:
            raise StoreError(f"{exc}: a long transaction or a stuck process") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"the bus at {self.url} failed: {exc}") from exc

    # -- the Bus protocol ---------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        message = new_message(
            check_topic(topic),
            payload,
            correlation_id=correlation_id,
            causation_id=causation_id,
            headers=headers,
            now=self._clock(),
        )
        async with self._write() as db:
            _insert(db, [message])
        return message

    async def consume(self, topic: str, group: str, consumer: str, *, block_s: float = 0.0) -> Message | None:
        deadline = time.monotonic() + block_s
        while True:
            async with self._write() as db:
                message = self._next(db, topic, group, consumer)
            left = deadline - time.monotonic()
            if message is not None or left <= 0:
                return message
            await asyncio.sleep(min(_POLL_S, left))  # other processes publish too: poll

    def _next(self, db: sqlite3.Connection, topic: str, group: str, consumer: str) -> Message | None:
        now = self._clock()
        db.execute("INSERT OR IGNORE INTO keel_bus_groups (topic, grp) VALUES (?, ?)", (topic, group))
        retry = db.execute(
            "SELECT seq, attempts, error FROM keel_bus_pending WHERE grp = ? AND topic = ? AND consumer IS NULL "
            "ORDER BY seq LIMIT 1",
            (group, topic),
        ).fetchone()
        if retry is not None:
            seq, attempts, error = retry
            db.execute(
                "UPDATE keel_bus_pending SET consumer = ?, attempts = ?, delivered_at = ? WHERE grp = ? AND seq = ?",
                (consumer, attempts + 1, now, group, seq),
            )
            return _delivered(db, seq, attempts + 1, error, consumer)
        (cursor,) = db.execute(
            "SELECT cursor FROM keel_bus_groups WHERE topic = ? AND grp = ?", (topic, group)
        ).fetchone()
        while True:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM keel_bus_messages WHERE topic = ? AND seq > ? ORDER BY seq LIMIT 1",
                (topic, cursor),
            ).fetchone()
            if row is None:
                return None
            cursor = row[0]
            db.execute("UPDATE keel_bus_groups SET cursor = ? WHERE topic = ? AND grp = ?", (cursor, topic, group))
            if db.execute(
                "SELECT 1 FROM keel_bus_handled WHERE grp = ? AND message_id = ?", (group, row[1])
            ).fetchone():
                continue  # settled by this group already (published twice under one id): never again
            db.execute(
                "INSERT INTO keel_bus_pending (grp, seq, topic, consumer, attempts, delivered_at) "
                "VALUES (?, ?, ?, ?, 1, ?)",
                (group, cursor, topic, consumer, now),
            )
            return row_message(row, attempts=1, consumer=consumer)

    def _settle(self, db: sqlite3.Connection, message: Message, group: str) -> bool:
        db.execute("DELETE FROM keel_bus_pending WHERE grp = ? AND seq = ?", (group, int(message.receipt)))
        return bool(
            db.execute(
                "INSERT OR IGNORE INTO keel_bus_handled (grp, message_id, at) VALUES (?, ?, ?)",
                (group, message.id, self._clock()),
            ).rowcount
        )

    async def ack(self, message: Message, group: str, *, publish: Sequence[Outgoing] = ()) -> bool:
        now = self._clock()
        outputs = [outgoing_message(message, check_topic(topic), payload, now=now) for topic, payload in publish]
        async with self._write() as db:
            if not self._settle(db, message, group):
                return False
            _insert(db, outputs)
        return True

    async def nack(self, message: Message, group: str, error: str) -> None:
        async with self._write() as db:  # only the delivery it was given (a claimed one has moved on: attempts differ)
            db.execute(
                "UPDATE keel_bus_pending SET consumer = NULL, error = ? WHERE grp = ? AND seq = ? AND attempts = ?",
                (error, group, int(message.receipt), message.attempts),
            )

    async def dead_letter(self, message: Message, group: str, error: str) -> bool:
        async with self._write() as db:
            if not self._settle(db, message, group):
                return False
            _insert(db, [dead_message(message, group, error, now=self._clock())])
        return True

    async def touch(self, message: Message, group: str) -> bool:
        async with self._write() as db:  # only the delivery it was given: a taker's has more attempts, a nacked none
            return bool(
                db.execute(
                    "UPDATE keel_bus_pending SET delivered_at = ? "
                    "WHERE grp = ? AND seq = ? AND consumer = ? AND attempts = ?",
                    (self._clock(), group, row_seq(message), message.consumer, message.attempts),
                ).rowcount
            )

    async def claim_stale(self, topic: str, group: str, consumer: str, *, idle_s: float) -> list[Message]:
        now = self._clock()
        async with self._write() as db:
            stale = db.execute(
                "SELECT seq, attempts, error FROM keel_bus_pending WHERE grp = ? AND topic = ? "
                "AND consumer IS NOT NULL AND delivered_at <= ? ORDER BY seq",
                (group, topic, now - idle_s),
            ).fetchall()
            claimed = []
            for seq, attempts, error in stale:
                db.execute(
                    "UPDATE keel_bus_pending SET consumer = ?, attempts = ?, delivered_at = ? "
                    "WHERE grp = ? AND seq = ?",
                    (consumer, attempts + 1, now, group, seq),
                )
                claimed.append(_delivered(db, seq, attempts + 1, error, consumer))
        return claimed

    async def trim(self, *, before: float, dead: bool = False) -> TrimReport:
        removed = removed_dead = kept = 0
        params: dict[str, Any] = {
            "before": before,
            "dead": dead,
            "suffix": DEAD_SUFFIX,
            "suffix_len": len(DEAD_SUFFIX),
            "batch": _TRIM_BATCH,
            "after": 0,
        }
        while True:
            async with self._write() as db:
                candidates = db.execute(_TRIM_CANDIDATES, params).fetchall()
                gone = [(seq, is_dead) for seq, is_dead, needed in candidates if not needed]
                db.executemany("DELETE FROM keel_bus_messages WHERE seq = ?", [(seq,) for seq, _ in gone])
            dead_gone = sum(1 for _, is_dead in gone if is_dead)
            removed, removed_dead = removed + len(gone) - dead_gone, removed_dead + dead_gone
            kept += len(candidates) - len(gone)
            if len(candidates) < _TRIM_BATCH:
                break
            params["after"] = candidates[-1][0]
            await asyncio.sleep(0)  # one batch at a time: let the rest of the process run between them
        handled = 0
        key: dict[str, Any] = {"before": before, "grp": "", "message_id": "", "batch": _TRIM_BATCH}
        while True:
            async with self._write() as db:
                records = db.execute(_TRIM_HANDLED, key).fetchall()
                old = [(group, message_id) for group, message_id, goes in records if goes]
                db.executemany("DELETE FROM keel_bus_handled WHERE grp = ? AND message_id = ?", old)
            handled += len(old)
            if len(records) < _TRIM_BATCH:
                break
            key["grp"], key["message_id"] = records[-1][0], records[-1][1]
            await asyncio.sleep(0)
        return TrimReport(messages=removed, handled=handled, dead_letters=removed_dead, kept=kept)

    async def topics(self) -> list[TopicStats]:
        stats: list[TopicStats] = await self._read(_topics)
        return stats

    async def dead_letters(self, topic: str) -> list[Message]:
        rows = await self._read(
            lambda db: db.execute(
                f"SELECT {_COLUMNS} FROM keel_bus_messages WHERE topic = ? ORDER BY seq", (dead_topic(topic),)
            ).fetchall()
        )
        return [row_message(row, attempts=0) for row in rows]

    async def close(self) -> None:
        with self._lock:
            self._db.close()


def _insert(db: sqlite3.Connection, messages: Sequence[Message]) -> None:
    db.executemany(
        "INSERT INTO keel_bus_messages (id, topic, payload, correlation_id, causation_id, headers, published_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                message.id,
                message.topic,
                json.dumps(message.payload),
                message.correlation_id,
                message.causation_id,
                json.dumps(dict(message.headers)),
                message.published_at,
            )
            for message in messages
        ],
    )


def _delivered(db: sqlite3.Connection, seq: int, attempts: int, error: str, consumer: str) -> Message:
    row = db.execute(f"SELECT {_COLUMNS} FROM keel_bus_messages WHERE seq = ?", (seq,)).fetchone()
    return row_message(row, attempts=attempts, error=error, consumer=consumer)


def _topics(db: sqlite3.Connection) -> list[TopicStats]:
    counts = dict(db.execute("SELECT topic, count(*) FROM keel_bus_messages GROUP BY topic").fetchall())
    groups = db.execute("SELECT topic, grp, cursor FROM keel_bus_groups ORDER BY topic, grp").fetchall()
    pending = {
        (topic, group): count
        for topic, group, count in db.execute(
            "SELECT topic, grp, count(*) FROM keel_bus_pending GROUP BY topic, grp"
        ).fetchall()
    }
    lag = {
        (topic, group): db.execute(
            "SELECT count(*) FROM keel_bus_messages WHERE topic = ? AND seq > ?", (topic, cursor)
        ).fetchone()[0]
        for topic, group, cursor in groups
    }
    return topic_stats(counts, [(topic, group) for topic, group, _ in groups], pending, lag)


class _WriteTransaction:
    """The bus's write transaction (a class rather than a generator: a bus operation makes one or two)."""

    __slots__ = ("_bus",)

    def __init__(self, bus: SQLiteBus) -> None:
        self._bus = bus

    async def __aenter__(self) -> sqlite3.Connection:
        bus = self._bus
        try:
            await when_free(bus._begin, bus._lock, bus._busy_timeout_s, f"the bus at {bus.url}", keep=True)
        except Busy as exc:
            raise StoreError(f"{exc}: a long transaction or a stuck process; nothing was written") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"the bus at {bus.url} failed: {exc}") from exc
        return bus._db

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        bus = self._bus
        try:
            bus._db.execute("COMMIT" if kind is None else "ROLLBACK")
        except sqlite3.Error as failed:
            if bus._db.in_transaction:  # a refused commit leaves the transaction open: nothing of it stays
                with contextlib.suppress(sqlite3.Error):
                    bus._db.execute("ROLLBACK")
            raise StoreError(f"the bus at {bus.url} failed: {failed}") from failed
        finally:
            bus._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"the bus at {bus.url} failed: {exc}") from exc
