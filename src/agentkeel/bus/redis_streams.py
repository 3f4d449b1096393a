"""The Redis Streams bus: for consumers in several processes or on several machines (needs ``agentkeel[redis]``).

A topic is a stream (``<prefix>:t:<topic>``) and a group is a consumer group on it: Redis keeps each group's
pending-entries list, so a consumer that dies leaves its messages pending until ``claim_stale`` takes them over
(``XAUTOCLAIM``). ``attempts`` is Redis's delivery count. Settling runs as one Lua script, which Redis executes
atomically: the handled-ids record (``<prefix>:h:<group>:<id>``, kept ``handled_ttl_s``), the ``XACK`` and the
outputs' ``XADD`` happen together or not at all. A ``nack`` keeps the entry pending and queues its id for the
group's next ``consume`` (``<prefix>:n:<topic>:<group>``), which claims it back with ``XCLAIM``.

``touch`` re-claims the entry for the consumer that holds it with ``XCLAIM ... JUSTID`` and a minimum idle time of
0, which resets its idle time without counting a delivery; a script checks first, atomically, that the entry is
still pending for that consumer with the same delivery count (a takeover raised it) and not queued by ``nack``.

``trim`` goes through each stream in arrival order, one batch per script call (atomic, so the groups' state it
reads cannot change under it): an entry published before the cut-off goes unless it is in a group's
pending-entries list or after a group's last-delivered id; a stream no group reads keeps its entries, except a
dead-letter stream with ``dead=True``. A run of removable entries at the head of the stream goes with
``XTRIM MINID``, others with ``XDEL``. A stream is looked at up to its first entry published at or after the
cut-off: entries arrive in publishing order, give or take the publishers' clocks, so a few old entries behind a
newer one wait for the next trim. A handled record holds when it was written, its stream entry and its topic, so
``trim`` can tell (``SCAN``) which are older than the cut-off with their entry gone; records written before they
held this expire with their TTL.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as Unreachable
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as NoAnswer

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
)
from agentkeel.errors import StoreError

_FIELDS = ("id", "payload", "correlation_id", "causation_id", "headers", "published_at")
_TRIM_BATCH = 500

# KEYS: the stream, the handled key, the topics set, the errors hash, then one stream per output.
# ARGV: group, entry id, handled TTL, the handled record ("<when> <entry id> <topic>"), then per output its topic
# and the 12 arguments of its fields.
_SETTLE = """
local first = redis.call('SET', KEYS[2], ARGV[4], 'NX', 'EX', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[2])
if not first then return 0 end
local at = 5
for i = 5, #KEYS do
  redis.call('SADD', KEYS[3], ARGV[at])
  redis.call('XADD', KEYS[i], '*', unpack(ARGV, at + 1, at + 12))
  at = at + 13
end
return 1
"""

# KEYS: the stream, the nacked list, the errors hash. ARGV: group, entry id, attempts, error.
# Only the delivery it was given: one claimed by another consumer since has a higher delivery count.
_NACK = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not entry or tonumber(entry[4]) ~= tonumber(ARGV[3]) then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[4])
return 1
"""

# KEYS: the stream, the nacked list. ARGV: group, entry id, consumer, attempts.
# Only the delivery it was given, still in hand: pending for this consumer, with the delivery count it was given
# (a takeover raises it), and not given back by nack. XCLAIM with JUSTID resets the idle time and not the count.
_TOUCH = """
local entry = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1]
if not entry or entry[2] ~= ARGV[3] or tonumber(entry[4]) ~= tonumber(ARGV[4]) then return 0 end
if redis.call('LPOS', KEYS[2], ARGV[2]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""

# One batch of a trim. KEYS: the stream. ARGV: the cut-off (seconds since the epoch), where to start ('-', or
# '(<id>' after the last entry looked at), the batch size, '1' if the stream holds dead letters (no reader needed).
# Returns: entries looked at (published before the cut-off), the last one's id, how many went, whether there may
# be more to look at, and whether every entry looked at went (the next batch starts at the stream's head again).
_TRIM = """
local stream, before, size = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[3])
if redis.call('EXISTS', stream) == 0 then return {0, '', 0, 0, 0} end
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function after(a, b)
  local ams, aseq = parts(a)
  local bms, bseq = parts(b)
  return ams > bms or (ams == bms and aseq > bseq)
end
local groups = {}
for _, info in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local fields = {}
  for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
  table.insert(groups, {name = fields['name'], last = fields['last-delivered-id']})
end
local entries = redis.call('XRANGE', stream, ARGV[2], '+', 'COUNT', size)
if #entries == 0 then return {0, '', 0, 0, 0} end
local pending = {}
for _, group in ipairs(groups) do
  local start = entries[1][1]
  while true do
    local page = redis.call('XPENDING', stream, group.name, start, entries[#entries][1], 100)
    for _, held in ipairs(page) do pending[held[1]] = true end
    if #page < 100 then break end
    start = '(' .. page[#page][1]
  end
end
local looked, last, stopped = 0, '', false
local head, scattered = ARGV[2] == '-', {}
local trim_to = nil
for _, entry in ipairs(entries) do
  local id, fields, published = entry[1], entry[2], nil
  for i = 1, #fields, 2 do
    if fields[i] == 'published_at' then published = tonumber(fields[i + 1]) end
  end
  if published == nil or published >= before then
    stopped = true
    break
  end
  looked, last = looked + 1, id
  local needed = #groups == 0 and ARGV[4] ~= '1'
  for _, group in ipairs(groups) do
    if pending[id] or after(id, group.last) then needed = true end
  end
  if needed then
    head = false
  elseif head then
    trim_to = id
  else
    table.insert(scattered, id)
  end
end
local gone = #scattered
if trim_to then  -- every entry below the one after it goes
  local ms, seq = string.match(trim_to, '^(%d+)-(%d+)$')
  gone = gone + redis.call('XTRIM', stream, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
end
if #scattered > 0 then redis.call('XDEL', stream, unpack(scattered)) end
local more = (not stopped and #entries == size) and 1 or 0
return {looked, last, gone, more, (head and looked > 0) and 1 or 0}
"""


class RedisBus:
    """Topics as Redis streams, groups as consumer groups."""

    def __init__(self, url: str, *, prefix: str = "keel:bus", handled_ttl_s: float = 14 * 86_400) -> None:
        self.url = url
        self.prefix = prefix
        self.handled_ttl_s = handled_ttl_s
        self._redis: Any = aioredis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=3)
        self._groups: set[tuple[str, str]] = set()
        self._settle_script: Any = self._redis.register_script(_SETTLE)
        self._nack_script: Any = self._redis.register_script(_NACK)
        self._touch_script: Any = self._redis.register_script(_TOUCH)
        self._trim_script: Any = self._redis.register_script(_TRIM)

    # -- keys -------------------------------------------------------------------------------------------------

    def _stream(self, topic: str) -> str:
        return f"{self.prefix}:t:{topic}"

    def _handled(self, group: str, message_id: str) -> str:
        return f"{self.prefix}:h:{group}:{message_id}"

    def _nacked(self, topic: str, group: str) -> str:
        return f"{self.prefix}:n:{topic}:{group}"

    def _errors(self, topic: str, group: str) -> str:
        return f"{self.prefix}:e:{topic}:{group}"

    @asynccontextmanager
    async def _talking(self) -> AsyncIterator[None]:
        try:
            yield
        except (Unreachable, NoAnswer, OSError) as exc:
            raise StoreError(self._unreachable(exc)) from exc
        except RedisError as exc:
            raise StoreError(f"the Redis bus at {self.url} failed: {exc}") from exc

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"the Redis bus at {self.url} is not reachable ({exc}): start Redis there (`redis-server`, or "
            "`docker run -p 6379:6379 redis:7`), or pass another bus URL (--bus / KEEL_BUS)"
        )

    # -- the Bus protocol -------------------------------------------------------------------------------------

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
            now=time.time(),
        )
        async with self._talking(), self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(f"{self.prefix}:topics", topic)
            pipe.xadd(self._stream(topic), _fields(message))
            await pipe.execute()
        return message

    async def _ensure_group(self, topic: str, group: str) -> None:
        if (topic, group) in self._groups:
            return
        async with self._talking():
            await self._redis.sadd(f"{self.prefix}:topics", topic)
            try:  # a new group starts at the stream's oldest entry, like the other backends
                await self._redis.xgroup_create(self._stream(topic), group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups.add((topic, group))

    async def consume(self, topic: str, group: str, consumer: str, *, block_s: float = 0.0) -> Message | None:
        await self._ensure_group(topic, group)
        stream = self._stream(topic)
        async with self._talking():
            while entry := await self._redis.lpop(self._nacked(topic, group)):
                claimed = await self._redis.xclaim(stream, group, consumer, min_idle_time=0, message_ids=[entry])
                if claimed:  # else it was settled meanwhile
                    return await self._delivered(topic, group, claimed[0], consumer)
            block = int(block_s * 1000) if block_s > 0 else None
            while True:
                read = await self._redis.xreadgroup(group, consumer, {stream: ">"}, count=1, block=block)
                if not read or not read[0][1]:
                    return None
                entry_id, fields = read[0][1][0]
                if not await self._redis.exists(self._handled(group, fields["id"])):
                    return _message(topic, entry_id, fields, attempts=1, consumer=consumer)
                await self._redis.xack(stream, group, entry_id)  # settled by this group already: never again
                block = None

    async def _delivered(self, topic: str, group: str, entry: tuple[str, dict[str, str]], consumer: str) -> Message:
        entry_id, fields = entry
        pending = await self._redis.xpending_range(self._stream(topic), group, min=entry_id, max=entry_id, count=1)
        attempts = int(pending[0]["times_delivered"]) if pending else 1
        error = await self._redis.hget(self._errors(topic, group), entry_id) or ""
        return _message(topic, entry_id, fields, attempts=attempts, error=error, consumer=consumer)

    async def _settle(self, message: Message, group: str, outputs: Sequence[Message]) -> bool:
        keys = [
            self._stream(message.topic),
            self._handled(group, message.id),
            f"{self.prefix}:topics",
            self._errors(message.topic, group),
        ]
        record = f"{time.time()!r} {message.receipt} {message.topic}"
        args: list[Any] = [group, message.receipt, int(self.handled_ttl_s), record]
        for output in outputs:
            keys.append(self._stream(output.topic))
            args.append(output.topic)
            for name, value in _fields(output).items():
                args += [name, value]
        async with self._talking():
            return bool(await self._settle_script(keys=keys, args=args))

    async def ack(self, message: Message, group: str, *, publish: Sequence[Outgoing] = ()) -> bool:
        now = time.time()
        outputs = [outgoing_message(message, check_topic(topic), payload, now=now) for topic, payload in publish]
        return await self._settle(message, group, outputs)

    async def nack(self, message: Message, group: str, error: str) -> None:
        keys = [self._stream(message.topic), self._nacked(message.topic, group), self._errors(message.topic, group)]
        async with self._talking():
            await self._nack_script(keys=keys, args=[group, message.receipt, message.attempts, error])

    async def dead_letter(self, message: Message, group: str, error: str) -> bool:
        return await self._settle(message, group, [dead_message(message, group, error, now=time.time())])

    async def touch(self, message: Message, group: str) -> bool:
        if not message.receipt or not message.consumer:
            return False  # never delivered
        keys = [self._stream(message.topic), self._nacked(message.topic, group)]
        async with self._talking():
            return bool(
                await self._touch_script(keys=keys, args=[group, message.receipt, message.consumer, message.attempts])
            )

    async def claim_stale(self, topic: str, group: str, consumer: str, *, idle_s: float) -> list[Message]:
        await self._ensure_group(topic, group)
        stream, start, claimed = self._stream(topic), "0-0", []
        async with self._talking():
            while True:
                start, entries, *_ = await self._redis.xautoclaim(
                    stream, group, consumer, min_idle_time=int(idle_s * 1000), start_id=start, count=100
                )
                for entry_id, fields in entries:
                    if fields is None:
                        continue  # trimmed away
                    await self._redis.lrem(self._nacked(topic, group), 0, entry_id)
                    if await self._redis.exists(self._handled(group, fields["id"])):
                        await self._redis.xack(stream, group, entry_id)
                        continue
                    claimed.append(await self._delivered(topic, group, (entry_id, fields), consumer))
                if start == "0-0":
                    return claimed

    async def trim(self, *, before: float, dead: bool = False) -> TrimReport:
        removed = removed_dead = kept = 0
        async with self._talking():
            for topic in sorted(await self._redis.smembers(f"{self.prefix}:topics")):
                is_dead = topic.endswith(DEAD_SUFFIX)
                if is_dead and not dead:
                    continue
                start = "-"
                while True:
                    looked, last, gone, more, head = await self._trim_script(
                        keys=[self._stream(topic)], args=[repr(before), start, _TRIM_BATCH, int(is_dead)]
                    )
                    kept += looked - gone
                    if is_dead:
                        removed_dead += gone
                    else:
                        removed += gone
                    if not more:
                        break
                    start = "-" if head else f"({last}"
            handled = await self._trim_handled(before)
        return TrimReport(messages=removed, handled=handled, dead_letters=removed_dead, kept=kept)

    async def _trim_handled(self, before: float) -> int:
        """Delete the handled records older than ``before`` whose stream entry is gone."""
        removed = 0
        keys: list[str] = []
        async for key in self._redis.scan_iter(match=f"{self.prefix}:h:*", count=_TRIM_BATCH):
            keys.append(key)
            if len(keys) >= _TRIM_BATCH:
                removed += await self._trim_handled_keys(keys, before)
                keys = []
        if keys:
            removed += await self._trim_handled_keys(keys, before)
        return removed

    async def _trim_handled_keys(self, keys: Sequence[str], before: float) -> int:
        old: list[tuple[str, str, str]] = []  # (key, topic, entry id)
        for key, record in zip(keys, await self._redis.mget(keys), strict=True):
            at, _, rest = (record or "").partition(" ")
            entry_id, _, topic = rest.partition(" ")
            try:
                written = float(at)
            except ValueError:
                continue  # written before records held their time: its TTL ends it
            if written < before and topic:
                old.append((key, topic, entry_id))
        if not old:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for _, topic, entry_id in old:
                pipe.xrange(self._stream(topic), min=entry_id, max=entry_id, count=1)
            found = await pipe.execute()
        gone = [key for (key, _, _), entries in zip(old, found, strict=True) if not entries]
        if gone:
            await self._redis.delete(*gone)
        return len(gone)

    async def topics(self) -> list[TopicStats]:
        stats = []
        async with self._talking():
            topics = sorted(await self._redis.smembers(f"{self.prefix}:topics"))
            for topic in topics:
                stream = self._stream(topic)
                groups = await self._redis.xinfo_groups(stream) if await self._redis.exists(stream) else []
                if topic.endswith(DEAD_SUFFIX) and not groups:
                    continue
                messages = await self._redis.xlen(stream)
                dead = await self._redis.xlen(self._stream(dead_topic(topic)))
                if not groups:
                    stats.append(TopicStats(topic=topic, group="", messages=messages, pending=0, lag=0, dead=dead))
                for info in groups:
                    stats.append(
                        TopicStats(
                            topic=topic,
                            group=info["name"],
                            messages=messages,
                            pending=int(info["pending"]),
                            lag=int(info.get("lag") or 0),
                            dead=dead,
                        )
                    )
        return sorted(stats, key=lambda row: (row.topic, row.group))

    async def dead_letters(self, topic: str) -> list[Message]:
        async with self._talking():
            entries = await self._redis.xrange(self._stream(dead_topic(topic)))
        return [_message(dead_topic(topic), entry_id, fields, attempts=0) for entry_id, fields in entries]

    async def close(self) -> None:
        await self._redis.aclose()

    async def drop(self) -> None:
        """Delete every key under the prefix (tests, and resetting a bus)."""
        async with self._talking():
            keys = [key async for key in self._redis.scan_iter(match=f"{self.prefix}:*", count=500)]
            if keys:
                await self._redis.delete(*keys)


def _fields(message: Message) -> dict[str, str]:
    return {
        "id": message.id,
        "payload": json.dumps(message.payload),
        "correlation_id": message.correlation_id,
        "causation_id": message.causation_id or "",
        "headers": json.dumps(dict(message.headers)),
        "published_at": repr(message.published_at),
    }


def _message(
    topic: str, entry_id: str, fields: Mapping[str, str], *, attempts: int, error: str = "", consumer: str = ""
) -> Message:
    headers: dict[str, str] = json.loads(fields["headers"])
    if error:
        headers["error"] = error
    return Message(
        id=fields["id"],
        topic=topic,
        payload=json.loads(fields["payload"]),
        correlation_id=fields["correlation_id"],
        causation_id=fields["causation_id"] or None,
        attempts=attempts,
        headers=headers,
        published_at=float(fields["published_at"]),
        receipt=entry_id,
        consumer=consumer,
    )
