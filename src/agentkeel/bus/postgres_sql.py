"""The PostgreSQL bus's schema and statements (``bus/postgres.py``): each operation of the bus is one statement, so
one round trip and one transaction."""

from __future__ import annotations

TOPIC_LOCK = 0x6B627573
"""The advisory lock class ("kbus") of publishing on a topic; the object id is a hash of the schema and topic."""

TABLES = (
    "CREATE TABLE IF NOT EXISTS keel_bus_messages (seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload TEXT NOT NULL, correlation_id TEXT NOT NULL, "
    "causation_id TEXT, headers TEXT NOT NULL, published_at DOUBLE PRECISION NOT NULL)",
    "CREATE INDEX IF NOT EXISTS keel_bus_messages_topic ON keel_bus_messages (topic, seq)",
    # A group's cursor: the seq of the last message of the topic it was given.
    "CREATE TABLE IF NOT EXISTS keel_bus_groups (topic TEXT NOT NULL, grp TEXT NOT NULL, "
    "cursor BIGINT NOT NULL DEFAULT 0, PRIMARY KEY (topic, grp))",
    # Deliveries not settled yet; consumer NULL: given back by nack, first in line for the group's next consume.
    "CREATE TABLE IF NOT EXISTS keel_bus_pending (grp TEXT NOT NULL, seq BIGINT NOT NULL, topic TEXT NOT NULL, "
    "consumer TEXT, attempts INTEGER NOT NULL, delivered_at DOUBLE PRECISION NOT NULL, "
    "error TEXT NOT NULL DEFAULT '', PRIMARY KEY (grp, seq))",
    "CREATE TABLE IF NOT EXISTS keel_bus_handled (grp TEXT NOT NULL, message_id TEXT NOT NULL, "
    "at DOUBLE PRECISION NOT NULL, PRIMARY KEY (grp, message_id))",
)
NAMES = ["keel_bus_messages", "keel_bus_messages_topic", "keel_bus_groups", "keel_bus_pending", "keel_bus_handled"]
COLUMNS = "m.seq, m.id, m.topic, m.payload, m.correlation_id, m.causation_id, m.headers, m.published_at"

# The group's next delivery for a consumer, in one statement. First a message given back by nack (one another
# consumer is taking at this moment is skipped, not waited for); else the topic's next message after the group's
# cursor, read under the cursor row's lock: the cursor moves onto it, and it becomes a delivery unless the group
# settled it already. The first column says which: 'retry' (the last two columns are its attempts and error),
# 'new', 'handled' (the cursor moved past it: look again) or 'none'; no row at all: the group has no cursor yet.
NEXT = f"""WITH retry AS (
    UPDATE keel_bus_pending SET consumer = %(consumer)s, attempts = attempts + 1, delivered_at = %(now)s
    WHERE (grp, seq) = (
        SELECT grp, seq FROM keel_bus_pending
        WHERE grp = %(group)s AND topic = %(topic)s AND consumer IS NULL
        ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING seq, attempts, error
), position AS (
    SELECT g.cursor FROM keel_bus_groups g
    WHERE g.topic = %(topic)s AND g.grp = %(group)s AND NOT EXISTS (SELECT 1 FROM retry)
    FOR UPDATE
), next AS (
    SELECT m.* FROM position, keel_bus_messages m
    WHERE m.topic = %(topic)s AND m.seq > position.cursor ORDER BY m.seq LIMIT 1
), moved AS (
    UPDATE keel_bus_groups g SET cursor = next.seq FROM next WHERE g.topic = %(topic)s AND g.grp = %(group)s
), delivered AS (
    INSERT INTO keel_bus_pending (grp, seq, topic, consumer, attempts, delivered_at)
    SELECT %(group)s, next.seq, next.topic, %(consumer)s, 1, %(now)s FROM next
    WHERE NOT EXISTS (SELECT 1 FROM keel_bus_handled h WHERE h.grp = %(group)s AND h.message_id = next.id)
    RETURNING seq
)
SELECT 'retry', {COLUMNS}, retry.attempts, retry.error FROM retry JOIN keel_bus_messages m ON m.seq = retry.seq
UNION ALL
SELECT CASE WHEN m.seq IS NULL THEN 'none' WHEN EXISTS (SELECT 1 FROM delivered) THEN 'new' ELSE 'handled' END,
    {COLUMNS}, 1, '' FROM position LEFT JOIN next m ON true"""

# Messages to append, one array element per message, with the advisory locks of their topics (in topic order, so
# that two statements never wait for each other's). The locks come first: a row's seq is drawn as the insert
# reads its source row, and each source row is joined to the count of locks taken, which exists once they all are.
LOCKS = f"pg_advisory_xact_lock({TOPIC_LOCK}, hashtext(coalesce(current_schema(), '') || ' ' || topic))"
APPEND = """INSERT INTO keel_bus_messages (id, topic, payload, correlation_id, causation_id, headers, published_at)
    SELECT new.* FROM (SELECT count(*) AS locks FROM locked) AS taken, {gate}unnest(
        %(ids)s::text[], %(topics)s::text[], %(payloads)s::text[], %(correlation_ids)s::text[],
        %(causation_ids)s::text[], %(headers)s::text[], %(published_at)s::float8[]
    ) AS new
    WHERE taken.locks = cardinality(%(locks)s::text[])"""
PUBLISH = f"""WITH locked AS MATERIALIZED (SELECT {LOCKS} FROM unnest(%(locks)s::text[]) AS topic)
{APPEND.format(gate="")}"""

# A settlement: the record that the group handled the message, the end of its delivery, and the messages it
# publishes, only if the record is new. The count is 0 when the group had settled the message before.
SETTLE = f"""WITH gone AS (DELETE FROM keel_bus_pending WHERE grp = %(group)s AND seq = %(seq)s),
settled AS (
    INSERT INTO keel_bus_handled (grp, message_id, at) VALUES (%(group)s, %(id)s, %(now)s)
    ON CONFLICT DO NOTHING RETURNING 1
), locked AS MATERIALIZED (
    SELECT {LOCKS} FROM settled, unnest(%(locks)s::text[]) AS topic
), published AS (
    {APPEND.format(gate="settled, ")}
)
SELECT count(*) FROM settled"""

# The group's deliveries idle since ``before``, taken over by this consumer (those being settled at this moment
# are skipped).
STALE = f"""WITH stale AS (
    SELECT grp, seq FROM keel_bus_pending
    WHERE grp = %(group)s AND topic = %(topic)s AND consumer IS NOT NULL AND delivered_at <= %(before)s
    ORDER BY seq FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE keel_bus_pending p SET consumer = %(consumer)s, attempts = p.attempts + 1, delivered_at = %(now)s
    FROM stale WHERE p.grp = stale.grp AND p.seq = stale.seq
    RETURNING p.seq, p.attempts, p.error
)
SELECT {COLUMNS}, taken.attempts, taken.error FROM taken JOIN keel_bus_messages m ON m.seq = taken.seq
ORDER BY m.seq"""


# One batch of a trim: the next messages published before the cut-off (after seq ``after``), and among them those
# no group still needs removed. A message is needed when it is on a topic no group reads (dead letters need no
# reader), a group's cursor has not reached it, or a group holds it pending. Answers how many were looked at, the
# last seq looked at, and how many messages and dead letters went.
TRIM = """WITH candidates AS (
    SELECT m.seq, m.topic, right(m.topic, %(suffix_len)s) = %(suffix)s AS dead FROM keel_bus_messages m
    WHERE m.seq > %(after)s AND m.published_at < %(before)s
        AND (%(with_dead)s OR right(m.topic, %(suffix_len)s) <> %(suffix)s)
    ORDER BY m.seq LIMIT %(batch)s
), removable AS (
    SELECT c.seq, c.dead FROM candidates c
    WHERE (c.dead OR EXISTS (SELECT 1 FROM keel_bus_groups g WHERE g.topic = c.topic))
        AND NOT EXISTS (SELECT 1 FROM keel_bus_groups g WHERE g.topic = c.topic AND g.cursor < c.seq)
        AND NOT EXISTS (
            SELECT 1 FROM keel_bus_groups g JOIN keel_bus_pending p ON p.grp = g.grp AND p.seq = c.seq
            WHERE g.topic = c.topic
        )
), removed AS (
    DELETE FROM keel_bus_messages m USING removable r WHERE m.seq = r.seq RETURNING r.dead
)
SELECT (SELECT count(*) FROM candidates), (SELECT max(seq) FROM candidates),
    (SELECT count(*) FROM removed WHERE NOT dead), (SELECT count(*) FROM removed WHERE dead)"""

# One batch of handled-id records in key order (after ``grp``, ``message_id``), those older than the cut-off whose
# message is gone deleted. Answers how many were looked at, the last key, and how many went.
TRIM_HANDLED = """WITH records AS (
    SELECT h.grp, h.message_id, h.at FROM keel_bus_handled h
    WHERE (h.grp, h.message_id) > (%(grp)s, %(message_id)s) ORDER BY h.grp, h.message_id LIMIT %(batch)s
), gone AS (
    DELETE FROM keel_bus_handled h USING records r
    WHERE h.grp = r.grp AND h.message_id = r.message_id AND r.at < %(before)s
        AND NOT EXISTS (SELECT 1 FROM keel_bus_messages m WHERE m.id = r.message_id)
    RETURNING 1
), last AS (SELECT grp, message_id FROM records ORDER BY grp DESC, message_id DESC LIMIT 1)
SELECT (SELECT count(*) FROM records), (SELECT grp FROM last), (SELECT message_id FROM last),
    (SELECT count(*) FROM gone)"""
