"""The PostgreSQL store's longer statements (``postgres.py`` runs them, and holds the one-liners).

Each write is one statement, so that it is one round trip and one transaction on an autocommit connection;
where it touches several tables, data-modifying ``WITH`` clauses chain the parts. ``%(name)s`` and ``%s`` are
psycopg's placeholders.
"""

from __future__ import annotations

RUN_COLUMNS = (
    "run_id, agent, status, reason, task, model, steps, input_tokens, output_tokens, cost_usd, created_at, "
    "updated_at, parent_id, agent_ref"
)

# A new run, its first event and its lease: one statement, so one transaction.
CREATE = f"""
WITH run AS (
    INSERT INTO keel_runs ({RUN_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
), first AS (
    INSERT INTO keel_events (run_id, seq, kind, at, data) VALUES (%s, 1, %s, %s, %s)
)
INSERT INTO keel_leases (run_id, owner, expires_at, lease_s) VALUES (%s, %s, %s, %s)"""

# An append. ``fence`` locks the lease row (why that row: ``postgres.py``'s docstring) and reads the owner, the
# journal's length and a pending cancel request; the events, and the run row when given, are written only if the
# fence fits. No row back: no lease, or no such run.
_APPEND_FENCE = """
WITH fence AS (
    SELECT l.owner, (SELECT max(seq) FROM keel_events WHERE run_id = l.run_id) AS last_seq,
        r.cancel_by, r.cancel_reason, r.cancel_at
    FROM keel_leases l JOIN keel_runs r ON r.run_id = l.run_id
    WHERE l.run_id = %(run_id)s FOR UPDATE OF l
), fits AS (
    SELECT FROM fence WHERE owner = %(owner)s AND last_seq = %(after_seq)s
), appended AS (
    INSERT INTO keel_events (run_id, seq, kind, at, data)
    SELECT %(run_id)s, %(after_seq)s + n, kind, at, data
    FROM unnest(%(kinds)s::text[], %(ats)s::float8[], %(datas)s::bytea[]) WITH ORDINALITY AS e (kind, at, data, n)
    WHERE EXISTS (SELECT FROM fits)
)"""
_APPEND_ANSWER = " SELECT owner, last_seq, cancel_by, cancel_reason, cancel_at FROM fence"
APPEND = _APPEND_FENCE + _APPEND_ANSWER
APPEND_WITH_ROW = (
    _APPEND_FENCE
    + """, listed AS (
    UPDATE keel_runs SET status = %(status)s, reason = %(reason)s, steps = %(steps)s, input_tokens = %(input_tokens)s,
        output_tokens = %(output_tokens)s, cost_usd = %(cost_usd)s, updated_at = %(updated_at)s
    WHERE run_id = %(run_id)s AND EXISTS (SELECT FROM fits)
)"""
    + _APPEND_ANSWER
)

# Take or renew a lease in one statement: ON CONFLICT decides on the lease's newest version, so of two processes
# taking over an expired lease at once, one gets it and the other sees it held. No row back: busy or no such run.
TAKE_LEASE = (
    "INSERT INTO keel_leases (run_id, owner, expires_at, lease_s) "
    "SELECT run_id, %(owner)s, %(expires_at)s, %(lease_s)s FROM keel_runs WHERE run_id = %(run_id)s "
    "ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at, "
    "lease_s = excluded.lease_s WHERE keel_leases.owner = excluded.owner OR keel_leases.expires_at <= %(now)s "
    "RETURNING owner"
)

# Who holds the run's lease, when taking it failed (no row: no such run).
LEASE_HOLDER = (
    "SELECT l.owner, l.expires_at FROM keel_runs r LEFT JOIN keel_leases l ON l.run_id = r.run_id WHERE r.run_id = %s"
)

# The first request stands: later ones change nothing.
REQUEST_CANCEL = (
    "UPDATE keel_runs SET cancel_by = coalesce(cancel_by, %s), cancel_reason = coalesce(cancel_reason, %s), "
    "cancel_at = coalesce(cancel_at, %s) WHERE run_id = %s"
)

# Many runs' appends in one statement (group commit): the same fence per run, the runs' lease rows locked in
# run-id order (so that two batches can never wait on each other in a circle), each run's events and row written
# only if its own fence fits. One row back per run that has a lease.
APPEND_MANY = """
WITH input AS (
    SELECT * FROM unnest(%(run_ids)b::text[], %(owners)b::text[], %(after_seqs)b::bigint[])
        AS i (run_id, owner, after_seq)
), fence AS (
    SELECT l.run_id, l.owner, (SELECT max(seq) FROM keel_events WHERE run_id = l.run_id) AS last_seq,
        r.cancel_by, r.cancel_reason, r.cancel_at
    FROM keel_leases l JOIN keel_runs r ON r.run_id = l.run_id
    WHERE l.run_id IN (SELECT run_id FROM input) ORDER BY l.run_id FOR UPDATE OF l
), fits AS (
    SELECT f.run_id FROM fence f JOIN input i ON i.run_id = f.run_id
    WHERE f.owner = i.owner AND f.last_seq = i.after_seq
), appended AS (
    INSERT INTO keel_events (run_id, seq, kind, at, data)
    SELECT e.run_id, e.seq, e.kind, e.at, e.data
    FROM unnest(%(e_run_ids)b::text[], %(e_seqs)b::bigint[], %(e_kinds)b::text[], %(e_ats)b::float8[],
        %(e_datas)b::bytea[]) AS e (run_id, seq, kind, at, data)
    WHERE e.run_id IN (SELECT run_id FROM fits)
), listed AS (
    UPDATE keel_runs k SET status = w.status, reason = w.reason, steps = w.steps, input_tokens = w.input_tokens,
        output_tokens = w.output_tokens, cost_usd = w.cost_usd, updated_at = w.updated_at
    FROM unnest(%(w_run_ids)b::text[], %(w_status)b::text[], %(w_reason)b::text[], %(w_steps)b::bigint[],
        %(w_input)b::bigint[], %(w_output)b::bigint[], %(w_cost)b::float8[], %(w_updated)b::float8[])
        AS w (run_id, status, reason, steps, input_tokens, output_tokens, cost_usd, updated_at)
    WHERE k.run_id = w.run_id AND w.run_id IN (SELECT run_id FROM fits)
)
SELECT run_id, owner, last_seq, cancel_by, cancel_reason, cancel_at FROM fence"""

# Many new runs in one statement (group commit): each with its first event and its lease. A run id already taken
# fails the whole statement; the store then creates each run on its own, to tell which.
CREATE_MANY = f"""
WITH run AS (
    INSERT INTO keel_runs ({RUN_COLUMNS})
    SELECT * FROM unnest(%(run_id)b::text[], %(agent)b::text[], %(status)b::text[], %(reason)b::text[],
        %(task)b::text[], %(model)b::text[], %(steps)b::bigint[], %(input_tokens)b::bigint[],
        %(output_tokens)b::bigint[], %(cost_usd)b::float8[], %(created_at)b::float8[], %(updated_at)b::float8[],
        %(parent_id)b::text[], %(agent_ref)b::text[])
), first AS (
    INSERT INTO keel_events (run_id, seq, kind, at, data)
    SELECT run_id, 1, kind, at, data FROM unnest(%(run_id)b::text[], %(kind)b::text[], %(at)b::float8[],
        %(data)b::bytea[]) AS e (run_id, kind, at, data)
)
INSERT INTO keel_leases (run_id, owner, expires_at, lease_s)
SELECT * FROM unnest(%(run_id)b::text[], %(owner)b::text[], %(expires_at)b::float8[], %(lease_s)b::float8[])"""

# Many leases let go of in one statement: each only if its owner still holds it.
RELEASE_MANY = """
DELETE FROM keel_leases l USING unnest(%(run_id)b::text[], %(owner)b::text[]) AS r (run_id, owner)
WHERE l.run_id = r.run_id AND l.owner = r.owner"""
