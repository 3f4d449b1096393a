"""The SQLite store's frequent writes, batched: new runs, appends and lease releases of concurrent runs.

The group commit (``group_commit.py``) hands each function below all the items of its kind queued in one
event-loop turn, inside one ``BEGIN IMMEDIATE`` transaction: no other connection writes meanwhile, so what a
batch reads still holds when it writes. Each function checks every item first (one query for the batch), then
writes the items that passed with one ``executemany`` per table, and answers per item: its value, or the
``KeelError`` that refused it (a refused item wrote nothing). The same read fetches what the items must know of
the kill switches: the switch version for appends, the switches that stop new runs' agents for creates.

Run ids travel to SQLite as one JSON array (``json_each``), so a batch of any size is one statement that
SQLite prepares once.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from agentkeel.core.events import RunStarted
from agentkeel.errors import KeelError, Killed, LeaseLost, RunIdTaken, RunNotFound
from agentkeel.stores.base import CancelRequest, RunRow, Signals, Switch, blocking_switch, signals
from agentkeel.stores.encoding import journal_bytes

RUN_COLUMNS = (
    "run_id, agent, status, reason, task, model, steps, input_tokens, output_tokens, cost_usd, created_at, "
    "updated_at, parent_id, agent_ref"
)
_IN_BATCH = "IN (SELECT value FROM json_each(?))"
_FENCE = (
    "SELECT r.run_id, l.owner, (SELECT max(seq) FROM keel_events e WHERE e.run_id = r.run_id), "
    "r.cancel_by, r.cancel_reason, r.cancel_at, (SELECT version FROM keel_switch_version) "
    "FROM keel_runs r LEFT JOIN keel_leases l ON l.run_id = r.run_id WHERE r.run_id "
)
_FENCES = _FENCE + _IN_BATCH
_FENCE_ONE = _FENCE + "= ?"
"""A run alone on the store appends one at a time: its fence without the JSON array."""
_STOPPING = (  # the switches that stop any of the batch's agents
    "SELECT scope, target, by, reason, at FROM keel_switches "
    f"WHERE scope = 'all' OR (scope = 'agent' AND target {_IN_BATCH})"
)
_INSERT_EVENT = "INSERT INTO keel_events (run_id, seq, kind, at, data) VALUES (?, ?, ?, ?, ?)"
_UPDATE_ROW = (
    "UPDATE keel_runs SET status = ?, reason = ?, steps = ?, input_tokens = ?, output_tokens = ?, cost_usd = ?, "
    "updated_at = ? WHERE run_id = ?"
)


@dataclass(slots=True)
class NewRun:
    first: RunStarted
    row: RunRow
    owner: str
    expires_at: float
    lease_s: float


@dataclass(slots=True)
class Append:
    run_id: str
    owner: str
    after_seq: int
    events: list[tuple[str, int, str, float, bytes]]
    """The journal rows, encoded: (run id, seq, kind, at, data)."""
    row: tuple[object, ...] | None
    """The run row's new values, in ``_UPDATE_ROW``'s order, when the row is rewritten."""


def append_item(run_id: str, owner: str, after_seq: int, events: Any, row: RunRow | None) -> Append:
    encoded = [
        (run_id, after_seq + offset, event.kind, event.at, journal_bytes(event))
        for offset, event in enumerate(events, start=1)
    ]
    values = None
    if row is not None:
        values = (
            row.status,
            row.reason,
            row.steps,
            row.input_tokens,
            row.output_tokens,
            row.cost_usd,
            row.updated_at,
            run_id,
        )
    return Append(run_id=run_id, owner=owner, after_seq=after_seq, events=encoded, row=values)


def append_many(db: sqlite3.Connection, items: list[Append], url: str) -> list[Signals | KeelError]:
    """Each append is fenced (its lease's owner, its journal's length) and answers with its run's pending cancel
    request and the switch version."""
    if len(items) == 1:
        fenced = db.execute(_FENCE_ONE, (items[0].run_id,))
    else:
        fenced = db.execute(_FENCES, (_ids(item.run_id for item in items),))
    fences = {found[0]: found[1:] for found in fenced}
    answers: list[Signals | KeelError] = []
    events: list[tuple[str, int, str, float, bytes]] = []
    rows: list[tuple[object, ...]] = []
    for item in items:
        found = fences.get(item.run_id)
        if found is None:
            answers.append(RunNotFound(item.run_id, url))
            continue
        if found[0] != item.owner or found[1] != item.after_seq:
            answers.append(LeaseLost(item.run_id, item.owner))
            continue
        fences[item.run_id] = (found[0], item.after_seq + len(item.events), *found[2:])  # the same run again
        events.extend(item.events)
        if item.row is not None:
            rows.append(item.row)
        cancel = None if found[2] is None else CancelRequest(by=found[2], reason=found[3], at=found[4])
        answers.append(signals(cancel, found[5]))
    if events:
        db.executemany(_INSERT_EVENT, events)
    if rows:
        db.executemany(_UPDATE_ROW, rows)
    return answers


def create_many(db: sqlite3.Connection, items: list[NewRun], url: str) -> list[KeelError | None]:
    """New runs, each with its first event and its lease; an id already taken, or an agent a switch stops, is
    refused."""
    stopping = [
        Switch(scope=found[0], target=found[1], by=found[2], reason=found[3], at=found[4])
        for found in db.execute(_STOPPING, (_ids({item.row.agent for item in items}),))
    ]
    taken = {
        found[0]
        for found in db.execute(
            f"SELECT run_id FROM keel_runs WHERE run_id {_IN_BATCH}", (_ids(item.first.run_id for item in items),)
        )
    }
    answers: list[KeelError | None] = []
    runs: list[tuple[object, ...]] = []
    events: list[tuple[object, ...]] = []
    leases: list[tuple[object, ...]] = []
    for item in items:
        run_id = item.first.run_id
        if run_id in taken:
            answers.append(RunIdTaken(run_id, url))
            continue
        stop = blocking_switch(stopping, item.row.agent) if stopping else None
        if stop is not None:
            answers.append(Killed(stop, item.row.agent))
            continue
        taken.add(run_id)
        runs.append(row_values(item.row))
        events.append((run_id, 1, item.first.kind, item.first.at, journal_bytes(item.first)))
        leases.append((run_id, item.owner, item.expires_at, item.lease_s))
        answers.append(None)
    if runs:
        db.executemany(f"INSERT INTO keel_runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", runs)
        db.executemany(_INSERT_EVENT, events)
        db.executemany("INSERT INTO keel_leases (run_id, owner, expires_at, lease_s) VALUES (?, ?, ?, ?)", leases)
    return answers


def release_many(db: sqlite3.Connection, items: list[tuple[str, str]]) -> list[None]:
    """Leases let go of, as (run id, owner): only the owner's lease is deleted."""
    db.executemany("DELETE FROM keel_leases WHERE run_id = ? AND owner = ?", items)
    return [None] * len(items)


def row_values(row: RunRow) -> tuple[object, ...]:
    return (
        row.run_id,
        row.agent,
        row.status,
        row.reason,
        row.task,
        row.model,
        row.steps,
        row.input_tokens,
        row.output_tokens,
        row.cost_usd,
        row.created_at,
        row.updated_at,
        row.parent_id,
        row.agent_ref,
    )


def _ids(run_ids: Any) -> str:
    return json.dumps(list(run_ids))
