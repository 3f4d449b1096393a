"""The shop's database: customers, orders, policies, refunds (and their voids) and escalations, in one SQLite
file.

A ``Shop`` is handed to the tools as the agent's ``deps``. It opens a connection per use, so that tools running
in worker threads, and a second process (the demo's crashing worker), each get their own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    email TEXT PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    email TEXT NOT NULL REFERENCES customers (email),
    item TEXT NOT NULL,
    amount_usd REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('processing', 'shipped', 'delivered')),
    ordered_on TEXT NOT NULL,
    shipped_on TEXT,
    delivered_on TEXT,
    carrier TEXT,
    tracking TEXT
);
CREATE TABLE IF NOT EXISTS policies (
    topic TEXT PRIMARY KEY,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    refund_id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders (order_id),
    amount_usd REAL NOT NULL,
    reason TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS refund_voids (
    void_id INTEGER PRIMARY KEY,
    refund_id INTEGER NOT NULL UNIQUE REFERENCES refunds (refund_id),
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS escalations (
    escalation_id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS carrier_requests (
    tracking TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""

CUSTOMERS = (
    ("ana@example.com", "Ana Lima"),
    ("ben@example.com", "Ben Okafor"),
    ("chloe@example.com", "Chloé Martin"),
    ("dev@example.com", "Dev Patel"),
    ("eva@example.com", "Eva Novak"),
    ("femi@example.com", "Femi Adeyemi"),
)

# order id, email, item, amount, status, ordered (days ago), shipped (days ago), delivered (days ago), tracking
ORDERS = (
    ("#1001", "ana@example.com", "Brass desk lamp", 89.00, "shipped", 4, 2, None, "PX-771203"),
    ("#1002", "ben@example.com", "Espresso grinder", 159.00, "shipped", 8, 6, None, "PX-773810"),
    ("#1003", "chloe@example.com", "Wool throw", 64.50, "delivered", 9, 7, 3, "PX-769044"),
    ("#1004", "dev@example.com", "Electric kettle", 45.00, "delivered", 60, 58, 52, "PX-701127"),
    ("#1005", "eva@example.com", "27-inch monitor", 249.00, "delivered", 6, 4, 2, "PX-772566"),
    ("#1006", "ana@example.com", "Linen lamp shade", 19.00, "processing", 1, None, None, None),
    ("#1007", "femi@example.com", "Ergonomic office chair", 389.00, "delivered", 9, 7, 4, "PX-772148"),
    ("#1234", "ben@example.com", "Reading glasses", 35.00, "shipped", 3, 1, None, "PX-772901"),
)

REFUND_WINDOW_DAYS = 30

SHOP_PATH = Path(".keel/demo/shop.db")
"""Where ``keel demo`` keeps the shop, relative to the directory it runs in."""

POLICIES = {
    "refunds": (
        f"A delivered order may be refunded, in full or in part, within {REFUND_WINDOW_DAYS} days of delivery and up "
        "to the amount paid. Damaged, faulty or wrong items qualify; so do unused items returned for a change of "
        f"mind. Past {REFUND_WINDOW_DAYS} days, do not refund: escalate to a person, who may offer a repair or a "
        "goodwill credit. Orders not yet delivered cannot be refunded: offer to track them instead."
    ),
    "shipping": (
        "Orders ship within 2 working days with Parcelo and usually arrive 3 to 5 working days later. A parcel "
        "whose tracking has not moved for 5 working days is investigated with the carrier."
    ),
    "returns": (
        "Items may be returned within 30 days of delivery with the prepaid label from the order page. The refund is "
        "issued when the return is scanned by the carrier."
    ),
}


@dataclass(kw_only=True)
class Shop:
    """The shop's database, and the settings of its simulated outside world."""

    path: Path
    carrier_failures: int = 0
    """How many requests to the carrier's tracking API fail (per parcel) before one succeeds: a flaky service."""
    today: date = field(default_factory=date.today)
    _ready: bool = field(default=False, repr=False)

    @classmethod
    def fresh(cls, path: Path, *, carrier_failures: int = 0) -> Shop:
        """A new database at ``path`` (an old one there is replaced), seeded with the sample data."""
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + "-journal"), path.with_name(path.name + "-wal")):
            stale.unlink(missing_ok=True)
        shop = cls(path=path, carrier_failures=carrier_failures)
        shop.ensure()
        return shop

    def ensure(self) -> None:
        """Create and seed the database if it is not there yet."""
        if self._ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(self.path, timeout=10.0)) as db, db:
            db.executescript(SCHEMA)
            db.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?)", CUSTOMERS)
            db.executemany(
                "INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (oid, email, item, amount, status, self._ago(o), self._ago(s), self._ago(d), "Parcelo", track)
                    for oid, email, item, amount, status, o, s, d, track in ORDERS
                ],
            )
            db.executemany("INSERT OR IGNORE INTO policies VALUES (?, ?)", POLICIES.items())
        self._ready = True

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A connection for one unit of work, committed when the block ends without an error."""
        self.ensure()
        with closing(sqlite3.connect(self.path, timeout=10.0)) as db, db:
            db.row_factory = sqlite3.Row
            yield db

    def refund_count(self, order_id: str, *, voided: bool = False) -> int:
        """How many of the order's refunds stand (``voided=True``: how many were voided)."""
        with self.connect() as db:
            row = db.execute(
                "SELECT count(*) FROM refunds r WHERE order_id = ? "
                "AND EXISTS (SELECT 1 FROM refund_voids v WHERE v.refund_id = r.refund_id) = ?",
                (order_id, int(voided)),
            ).fetchone()
        return int(row[0])

    def voids(self, order_id: str) -> list[dict[str, Any]]:
        """The voids of the order's refunds, oldest first: which refund each voided, under which key."""
        with self.connect() as db:
            rows = db.execute(
                "SELECT v.void_id, v.refund_id, r.amount_usd, v.idempotency_key FROM refund_voids v "
                "JOIN refunds r USING (refund_id) WHERE r.order_id = ? ORDER BY v.void_id",
                (order_id,),
            ).fetchall()
        return [dict(row) for row in rows]

    def _ago(self, days: int | None) -> str | None:
        return None if days is None else (self.today - timedelta(days=days)).isoformat()
