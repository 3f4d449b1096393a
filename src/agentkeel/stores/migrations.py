"""The store's schema, as numbered migrations. A store applies the ones it lacks when it opens, in one
transaction; never edit a released migration, append a new one."""

from __future__ import annotations

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
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            parent_id TEXT,
            agent_ref TEXT NOT NULL DEFAULT '',
            cancel_by TEXT,
            cancel_reason TEXT,
            cancel_at REAL
        )""",
        "CREATE INDEX keel_runs_by_created ON keel_runs (created_at)",
        "CREATE INDEX keel_runs_by_status ON keel_runs (status, created_at)",
        """CREATE TABLE keel_events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            at REAL NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        """CREATE TABLE keel_leases (
            run_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            expires_at REAL NOT NULL,
            lease_s REAL NOT NULL
        )""",
    ),
    # 2: kill switches, and their version: every set or clear moves it on, and every append reads it.
    (
        """CREATE TABLE keel_switches (
            scope TEXT NOT NULL,
            target TEXT NOT NULL,
            by TEXT NOT NULL,
            reason TEXT NOT NULL,
            at REAL NOT NULL,
            PRIMARY KEY (scope, target)
        )""",
        """CREATE TABLE keel_switch_version (
            one INTEGER PRIMARY KEY CHECK (one = 1),
            version INTEGER NOT NULL
        )""",
        "INSERT INTO keel_switch_version (one, version) VALUES (1, 0)",
    ),
)
