"""The PostgreSQL store's schema, as numbered migrations, and the procedure that applies them exactly once.

Migration N here means what migration N in ``migrations.py`` means for SQLite: the same tables, the same columns,
in PostgreSQL's types (``DOUBLE PRECISION`` where SQLite says ``REAL``, which in PostgreSQL is only 4 bytes;
``BYTEA`` for the event bytes the codec writes). A test keeps the two lists in step. Never edit a released
migration; append a new one to both lists.

Several processes may open a fresh database at the same moment (a fleet of workers starting together). Each takes
a transaction-level advisory lock for the schema before it reads the version, so one applies the missing
migrations and the others, queued on the lock, then find nothing left to do. The lock goes with the transaction,
so a process that dies half-way releases it, and its half-applied migration is rolled back with it.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import psycopg
from psycopg import sql

from agentkeel.errors import StoreError

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs, their journals and their leases.
    (
        """CREATE TABLE keel_runs (
            run_id TEXT PRIMARY KEY,
            agent TEXT NOT NULL,
            status TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '',
            task TEXT NOT NULL,
            model TEXT NOT NULL,
            steps INTEGER NOT NULL DEFAULT 0,
            input_tokens BIGINT NOT NULL DEFAULT 0,
            output_tokens BIGINT NOT NULL DEFAULT 0,
            cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            parent_id TEXT,
            agent_ref TEXT NOT NULL DEFAULT '',
            cancel_by TEXT,
            cancel_reason TEXT,
            cancel_at DOUBLE PRECISION
        )""",
        "CREATE INDEX keel_runs_by_created ON keel_runs (created_at)",
        "CREATE INDEX keel_runs_by_status ON keel_runs (status, created_at)",
        """CREATE TABLE keel_events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            data BYTEA NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        """CREATE TABLE keel_leases (
            run_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL,
            lease_s DOUBLE PRECISION NOT NULL
        )""",
    ),
    # 2: kill switches, and their version: every set or clear moves it on, and every append reads it.
    (
        """CREATE TABLE keel_switches (
            scope TEXT NOT NULL,
            target TEXT NOT NULL,
            by TEXT NOT NULL,
            reason TEXT NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (scope, target)
        )""",
        """CREATE TABLE keel_switch_version (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            version BIGINT NOT NULL
        )""",
        "INSERT INTO keel_switch_version (one, version) VALUES (1, 0)",
    ),
)

MIGRATION_LOCK = 0x6B65656C
"""The advisory lock class ("keel") of schema migrations; the object id is a hash of the schema's name."""

_LOG = """CREATE TABLE IF NOT EXISTS keel_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_by TEXT NOT NULL
)"""
"""One row per applied migration: the schema's version is the highest, and an operator sees who applied what."""


async def migrate(conn: psycopg.AsyncConnection[Any], schema: str | None, where: str) -> int:
    """Create ``schema`` if it is missing and apply the migrations it lacks, in one transaction under the
    schema's advisory lock. ``conn`` is in autocommit mode, its ``search_path`` set to the schema. Returns the
    schema's version; a version newer than this code knows is a ``StoreError`` (``where`` names the store)."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(%s::integer, hashtext(coalesce(%s::text, current_schema(), '')))",
            (MIGRATION_LOCK, schema),
        )
        # CREATE SCHEMA IF NOT EXISTS would demand the CREATE privilege even when the schema exists.
        if schema is not None:
            found = await (await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))).fetchone()
            if found is None:
                await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        await conn.execute(_LOG)
        row = await (await conn.execute("SELECT coalesce(max(version), 0) FROM keel_migrations")).fetchone()
        version = int(row[0]) if row else 0
        latest = len(MIGRATIONS)
        if version > latest:
            raise StoreError(
                f"the store at {where} has schema version {version}, newer than this agentkeel knows ({latest}): "
                "upgrade agentkeel to use it"
            )
        applied_by = f"{socket.gethostname()}:{os.getpid()}"
        for number, statements in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO keel_migrations (version, applied_by) VALUES (%s, %s)", (number, applied_by)
            )
    return latest
