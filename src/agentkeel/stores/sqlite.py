"""The SQLite store (the default): one file, WAL, safe for several processes on one machine.

Writes go through a group commit (``group_commit.py``): the writes of concurrent runs in one event-loop turn
share one ``BEGIN IMMEDIATE`` transaction (writers queue on SQLite's lock instead of failing when they upgrade a
read lock) and one sync to disk. ``synchronous=FULL`` by default: a committed event survives a power cut, not only a
crashed process (``?synchronous=normal`` in the URL trades that for speed).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from agentkeel.core.codec import decode_journal
from agentkeel.core.events import Event, RunStarted
from agentkeel.errors import KeelError, RunBusy, RunNotFound, StoreError
from agentkeel.stores.base import CancelRequest, Lease, RunRow, Signals, Switch, ToolCounts, run_filters
from agentkeel.stores.group_commit import GroupCommit
from agentkeel.stores.migrations import MIGRATIONS
from agentkeel.stores.sqlite_batch import (
    RUN_COLUMNS,
    Append,
    NewRun,
    append_item,
    append_many,
    create_many,
    release_many,
)
from agentkeel.stores.sqlite_lock import begin_immediate, check_busy_timeout

_SYNC_MODES = ("off", "normal", "full", "extra")

# Kill switches. Setting one replaces the switch on the same target; an agent's (or everything's) also asks its
# runs that have not ended to stop, an earlier request standing. The version and the switches are read together.
_SET_SWITCH = (
    "INSERT INTO keel_switches (scope, target, by, reason, at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, target) DO UPDATE SET by = excluded.by, reason = excluded.reason, at = excluded.at"
)
_CANCEL_AGENT_RUNS = (
    "UPDATE keel_runs SET cancel_by = coalesce(cancel_by, ?1), cancel_reason = coalesce(cancel_reason, ?2), "
    "cancel_at = coalesce(cancel_at, ?3) "
    "WHERE status NOT IN ('completed', 'failed', 'cancelled') AND (?4 OR agent = ?5)"
)
_NEXT_VERSION = "UPDATE keel_switch_version SET version = version + 1"
_SWITCHES = (
    "SELECT v.version, s.scope, s.target, s.by, s.reason, s.at FROM keel_switch_version v "
    "LEFT JOIN keel_switches s ON 1 ORDER BY s.at, s.scope, s.target"
)

# Tool call outcomes per run and tool, from the journals of the runs a listing's filters (``{where}``) select: the
# window's runs by ``keel_runs_by_created``, then each one's events by the primary key (run_id, seq), parsing the
# JSON of the finished calls only. CROSS JOIN fixes that order: without statistics (the store never runs ANALYZE)
# SQLite would rather scan every event of the store and look each one's run up, 50 times slower for a window of a
# fiftieth of the runs. The cast: SQLite 3.45 and later read a BLOB given to a JSON function as JSONB, and the
# events hold JSON text.
_TOOL_OUTCOMES = """
SELECT run_id, json_extract(doc, '$.name') AS tool, count(*), sum(json_type(doc, '$.error') = 'object')
FROM (
    SELECT e.run_id, CAST(e.data AS TEXT) AS doc
    FROM keel_runs r CROSS JOIN keel_events e ON e.run_id = r.run_id AND e.kind = 'tool_call_finished'
    {where}
)
GROUP BY run_id, tool"""


class SQLiteStore:
    """Journals in a SQLite file."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``busy_timeout_s``: how long a write waits for the file's write lock while another process holds it
        (the event loop runs on meanwhile) before it fails."""
        if synchronous.lower() not in _SYNC_MODES:
            raise StoreError(f"synchronous={synchronous!r} is not a SQLite mode: use one of {', '.join(_SYNC_MODES)}")
        check_busy_timeout(busy_timeout_s)
        self.path = Path(path)
        self.url = f"sqlite:///{path}"
        self._clock = clock
        self._lock = threading.Lock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store at {path}: {exc}") from exc
        self._leased: set[str] = set()  # runs this store object leased out: the runs driven through it now
        self._group: GroupCommit[sqlite3.Connection] = GroupCommit(
            _Transaction(self._db, self._lock, round(busy_timeout_s * 1000)),
            wrap_error=self._wrap_error,
            alone=lambda: len(self._leased) <= 1,
            busy_timeout_s=busy_timeout_s,
        )

    def _wrap_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, sqlite3.Error):
            return StoreError(f"the SQLite store at {self.path} failed: {exc}")
        return exc

    # -- schema -------------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute("CREATE TABLE IF NOT EXISTS keel_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM keel_meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            latest = len(MIGRATIONS)
            if version > latest:
                raise StoreError(
                    f"the store at {self.path} has schema version {version}, newer than this agentkeel knows "
                    f"({latest}): upgrade agentkeel to use it"
                )
            for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    db.execute(statement)
                db.execute(
                    "INSERT INTO keel_meta (key, value) VALUES ('schema_version', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(number),),
                )

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"the SQLite store at {self.path} failed: {exc}") from exc

    @property
    def schema_version(self) -> int:
        row = self._db.execute("SELECT value FROM keel_meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.IntegrityError:
                raise
            except sqlite3.Error as exc:
                raise StoreError(f"the SQLite store at {self.path} failed: {exc}") from exc

    # -- the Store protocol -------------------------------------------------------------------------------

    async def create_run(self, first: RunStarted, row: RunRow, *, owner: str, lease_s: float) -> None:
        item = NewRun(first=first, row=row, owner=owner, expires_at=self._clock() + lease_s, lease_s=lease_s)
        await self._group.submit_to(self._create_many, item)
        self._leased.add(first.run_id)

    async def append(
        self, run_id: str, owner: str, after_seq: int, events: Sequence[Event], row: RunRow | None
    ) -> Signals:
        # One read for the batch checks the fences (lease owner, journal length) and fetches pending cancels and the
        # switch version; the lease itself is renewed by the driver's heartbeat, so an append writes only the events
        # (and the row).
        answer: Signals = await self._group.submit_to(
            self._append_many, append_item(run_id, owner, after_seq, events, row)
        )
        return answer

    async def load(self, run_id: str) -> list[Event]:
        with self._read() as db:
            rows = db.execute("SELECT seq, data FROM keel_events WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
        if not rows:
            raise RunNotFound(run_id, self.url)
        return decode_journal([data for _, data in rows], run_id=run_id)

    async def list_runs(
        self,
        *,
        limit: int | None = 50,
        status: str | None = None,
        agent: str | None = None,
        since: float | None = None,
    ) -> list[RunRow]:
        clause, params = run_filters(status=status, agent=agent, since=since, mark="?")
        with self._read() as db:
            rows = db.execute(
                f"SELECT {RUN_COLUMNS} FROM keel_runs {clause} ORDER BY created_at DESC LIMIT ?",
                (*params, -1 if limit is None else limit),  # SQLite reads a negative limit as none
            ).fetchall()
        return [_row_of(values) for values in rows]

    async def tool_outcomes(self, *, since: float | None = None, agent: str | None = None) -> list[ToolCounts]:
        clause, params = run_filters(status=None, agent=agent, since=since, mark="?", table="r.")
        with self._read() as db:
            rows = db.execute(_TOOL_OUTCOMES.format(where=clause), params).fetchall()
        return [
            ToolCounts(run_id=run_id, tool=tool, calls=calls, failures=failures)
            for run_id, tool, calls, failures in rows
        ]

    async def acquire_lease(self, run_id: str, owner: str, lease_s: float) -> Lease:
        def write(db: sqlite3.Connection) -> Lease:
            if db.execute("SELECT 1 FROM keel_runs WHERE run_id = ?", (run_id,)).fetchone() is None:
                raise RunNotFound(run_id, self.url)
            now = self._clock()
            held = db.execute("SELECT owner, expires_at FROM keel_leases WHERE run_id = ?", (run_id,)).fetchone()
            if held is not None and held[0] != owner and held[1] > now:
                raise RunBusy(run_id, held[0], held[1] - now)
            db.execute(
                "INSERT INTO keel_leases (run_id, owner, expires_at, lease_s) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
                "lease_s = excluded.lease_s",
                (run_id, owner, now + lease_s, lease_s),
            )
            return Lease(run_id=run_id, owner=owner, expires_at=now + lease_s, lease_s=lease_s)

        lease = await self._group.submit(write)
        self._leased.add(run_id)
        return lease

    async def renew_lease(self, run_id: str, owner: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            renewed = db.execute(
                "UPDATE keel_leases SET expires_at = ? + lease_s WHERE run_id = ? AND owner = ?",
                (self._clock(), run_id, owner),
            ).rowcount
            return bool(renewed)

        return await self._group.submit(write)

    async def release_lease(self, run_id: str, owner: str) -> None:
        self._leased.discard(run_id)
        await self._group.submit_to(release_many, (run_id, owner))

    async def request_cancel(self, run_id: str, request: CancelRequest) -> None:
        def write(db: sqlite3.Connection) -> None:
            found = db.execute(
                "UPDATE keel_runs SET cancel_by = coalesce(cancel_by, ?), cancel_reason = coalesce(cancel_reason, ?),"
                " cancel_at = coalesce(cancel_at, ?) WHERE run_id = ?",
                (request.by, request.reason, request.at, run_id),
            ).rowcount
            if not found:
                raise RunNotFound(run_id, self.url)

        await self._group.submit(write)

    async def set_switch(self, switch: Switch) -> int:
        def write(db: sqlite3.Connection) -> int:
            db.execute(_SET_SWITCH, (switch.scope, switch.target, switch.by, switch.reason, switch.at))
            if switch.scope != "tool":
                db.execute(
                    _CANCEL_AGENT_RUNS,
                    (switch.by, switch.reason, switch.at, switch.scope == "all", switch.target),
                )
            db.execute(_NEXT_VERSION)
            return int(db.execute("SELECT version FROM keel_switch_version").fetchone()[0])

        return await self._group.submit(write)

    async def clear_switch(self, scope: str, target: str) -> bool:
        def write(db: sqlite3.Connection) -> bool:
            gone = db.execute("DELETE FROM keel_switches WHERE scope = ? AND target = ?", (scope, target)).rowcount
            if gone:
                db.execute(_NEXT_VERSION)
            return bool(gone)

        return await self._group.submit(write)

    async def switches(self) -> tuple[int, list[Switch]]:
        with self._read() as db:
            rows = db.execute(_SWITCHES).fetchall()
        return int(rows[0][0]), [
            Switch(scope=row[1], target=row[2], by=row[3], reason=row[4], at=row[5]) for row in rows if row[1]
        ]

    def _create_many(self, db: sqlite3.Connection, items: list[NewRun]) -> list[KeelError | None]:
        return create_many(db, items, self.url)

    def _append_many(self, db: sqlite3.Connection, items: list[Append]) -> list[Signals | KeelError]:
        return append_many(db, items, self.url)

    async def close(self) -> None:
        self._group.close()
        with self._lock:
            self._db.close()


class _Transaction:
    """One group-commit batch on the store's connection, holding its lock from begin to commit or rollback.

    ``begin`` asks for the file's write lock without waiting (``Busy`` if another process holds it: the group
    commit tries again shortly while the event loop runs on); the connection's other statements keep the
    store's busy timeout.
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock, busy_timeout_ms: int) -> None:
        self._db = db
        self._lock = lock
        self._holding = False
        self._wait_ms = busy_timeout_ms

    def begin(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            begin_immediate(self._db, self._wait_ms)
        except BaseException:
            self._lock.release()
            raise
        self._holding = True
        return self._db

    def commit(self) -> None:
        self._db.execute("COMMIT")
        self._let_go()

    def rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        finally:
            self._let_go()

    def _let_go(self) -> None:
        if self._holding:
            self._holding = False
            self._lock.release()


def _row_of(values: Sequence[object]) -> RunRow:
    names = [name.strip() for name in RUN_COLUMNS.split(",")]
    return RunRow(**dict(zip(names, values, strict=True)))  # type: ignore[arg-type]
