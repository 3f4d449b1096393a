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

# The kill switches that stop new runs of the agents in ``agents``: one on everything, or one on such an agent.
_STOPPING = """killed AS (
    SELECT scope, target, by, reason, at FROM keel_switches
    WHERE scope = 'all' OR (scope = 'agent' AND target = ANY(%(agents)s::text[]))
)"""

# A new run, its first event and its lease: one statement, so one transaction. Nothing is written if a switch
# stops the run's agent; the rows back are those switches.
CREATE = f"""
WITH {_STOPPING}, run AS (
    INSERT INTO keel_runs ({RUN_COLUMNS})
    SELECT %(run_id)s, %(agent)s, %(status)s, %(reason)s, %(task)s, %(model)s, %(steps)s, %(input_tokens)s,
        %(output_tokens)s, %(cost_usd)s, %(created_at)s, %(updated_at)s, %(parent_id)s, %(agent_ref)s
    WHERE NOT EXISTS (SELECT FROM killed)
), first AS (
    INSERT INTO keel_events (run_id, seq, kind, at, data)
    SELECT %(run_id)s, 1, %(kind)s, %(at)s, %(data)s WHERE NOT EXISTS (SELECT FROM killed)
), lease AS (
    INSERT INTO keel_leases (run_id, owner, expires_at, lease_s)
    SELECT %(run_id)s, %(owner)s, %(expires_at)s, %(lease_s)s WHERE NOT EXISTS (SELECT FROM killed)
)
SELECT scope, target, by, reason, at FROM killed"""

# An append. ``fence`` locks the lease row (why that row: ``postgres.py``'s docstring) and reads the owner, the
# journal's length, a pending cancel request and the kill-switch version; the events, and the run row when given,
# are written only if the fence fits. No row back: no lease, or no such run.
_APPEND_FENCE = """
WITH fence AS (
    SELECT l.owner, (SELECT max(seq) FROM keel_events WHERE run_id = l.run_id) AS last_seq,
        r.cancel_by, r.cancel_reason, r.cancel_at, (SELECT version FROM keel_switch_version) AS switches
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
_APPEND_ANSWER = " SELECT owner, last_seq, cancel_by, cancel_reason, cancel_at, switches FROM fence"
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
        r.cancel_by, r.cancel_reason, r.cancel_at, (SELECT version FROM keel_switch_version) AS switches
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
SELECT run_id, owner, last_seq, cancel_by, cancel_reason, cancel_at, switches FROM fence"""

# Many new runs in one statement (group commit): each with its first event and its lease, unless a switch stops its
# agent; the rows back are the switches that stop any of the agents. A run id already taken fails the whole
# statement; the store then creates each run on its own, to tell which.
CREATE_MANY = f"""
WITH {_STOPPING.replace("%(agents)s", "%(agent)b")}, run AS (
    INSERT INTO keel_runs ({RUN_COLUMNS})
    SELECT * FROM unnest(%(run_id)b::text[], %(agent)b::text[], %(status)b::text[], %(reason)b::text[],
        %(task)b::text[], %(model)b::text[], %(steps)b::bigint[], %(input_tokens)b::bigint[],
        %(output_tokens)b::bigint[], %(cost_usd)b::float8[], %(created_at)b::float8[], %(updated_at)b::float8[],
        %(parent_id)b::text[], %(agent_ref)b::text[]) AS r ({RUN_COLUMNS})
    WHERE NOT EXISTS (SELECT FROM killed k WHERE k.scope = 'all' OR k.target = r.agent)
    RETURNING run_id
), first AS (
    INSERT INTO keel_events (run_id, seq, kind, at, data)
    SELECT run_id, 1, kind, at, data FROM unnest(%(run_id)b::text[], %(kind)b::text[], %(at)b::float8[],
        %(data)b::bytea[]) AS e (run_id, kind, at, data)
    WHERE run_id IN (SELECT run_id FROM run)
), lease AS (
    INSERT INTO keel_leases (run_id, owner, expires_at, lease_s)
    SELECT * FROM unnest(%(run_id)b::text[], %(owner)b::text[], %(expires_at)b::float8[], %(lease_s)b::float8[])
        AS l (run_id, owner, expires_at, lease_s)
    WHERE run_id IN (SELECT run_id FROM run)
)
SELECT scope, target, by, reason, at FROM killed"""

# Many leases let go of in one statement: each only if its owner still holds it.
RELEASE_MANY = """
DELETE FROM keel_leases l USING unnest(%(run_id)b::text[], %(owner)b::text[]) AS r (run_id, owner)
WHERE l.run_id = r.run_id AND l.owner = r.owner"""

# Kill switches. Setting one replaces the switch on the same target; a switch on an agent (or on everything) also
# asks its runs that have not ended to stop, an earlier request standing; the version moves on. One statement.
SET_SWITCH = """
WITH switch AS (
    INSERT INTO keel_switches (scope, target, by, reason, at)
    VALUES (%(scope)s, %(target)s, %(by)s, %(reason)s, %(at)s)
    ON CONFLICT (scope, target) DO UPDATE SET by = excluded.by, reason = excluded.reason, at = excluded.at
), cancels AS (
    UPDATE keel_runs SET cancel_by = coalesce(cancel_by, %(by)s), cancel_reason = coalesce(cancel_reason, %(reason)s),
        cancel_at = coalesce(cancel_at, %(at)s)
    WHERE %(scope)s <> 'tool' AND (%(scope)s = 'all' OR agent = %(target)s)
        AND status NOT IN ('completed', 'failed', 'cancelled')
)
UPDATE keel_switch_version SET version = version + 1 RETURNING version"""

# Lifting a switch moves the version on only if there was one. A row back: there was.
CLEAR_SWITCH = """
WITH gone AS (DELETE FROM keel_switches WHERE scope = %s AND target = %s RETURNING scope)
UPDATE keel_switch_version SET version = version + 1 WHERE EXISTS (SELECT FROM gone) RETURNING version"""

# The version and the switches in force, read together (a row of NULLs after the version: none in force).
SWITCHES = """
SELECT v.version, s.scope, s.target, s.by, s.reason, s.at FROM keel_switch_version v
LEFT JOIN keel_switches s ON true ORDER BY s.at, s.scope, s.target"""
