"""The in-process bus: topics in dicts, for tests and for agents that share one process. Nothing survives it."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


@dataclass(kw_only=True, slots=True)
class _Delivery:
    consumer: str | None
    """None: given back by ``nack``, waiting for the group's next consumer."""
    attempts: int
    delivered_at: float
    error: str = ""


class MemoryBus:
    """Topics, groups and the handled-ids record in one process's memory.

    Messages are numbered as the SQL backends number their rows (``seq``, never reused), so that a receipt or a
    group's cursor still names the same message after ``trim`` has removed older ones.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.url = "memory://"
        self._clock = clock
        self._seq = 0
        self._messages: dict[int, Message] = {}  # seq -> message
        self._topics: dict[str, list[int]] = {}  # topic -> the seqs of its messages, ascending
        self._cursors: dict[tuple[str, str], int] = {}  # (topic, group) -> seq of the last message given (0: none)
        self._pending: dict[tuple[str, str], dict[int, _Delivery]] = {}  # (topic, group) -> seq -> delivery
        self._handled: dict[tuple[str, str], float] = {}  # (group, message id) -> when it was settled
        self._published = asyncio.Condition()

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
        await self._append([message])
        return message

    async def _append(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self._seq += 1
            self._messages[self._seq] = message
            self._topics.setdefault(message.topic, []).append(self._seq)
        async with self._published:
            self._published.notify_all()

    async def consume(self, topic: str, group: str, consumer: str, *, block_s: float = 0.0) -> Message | None:
        deadline = time.monotonic() + block_s
        while True:
            message = self._next(topic, group, consumer)
            left = deadline - time.monotonic()
            if message is not None or left <= 0:
                return message
            async with self._published:
                try:
                    await asyncio.wait_for(self._published.wait(), left)
                except TimeoutError:
                    return self._next(topic, group, consumer)

    def _next(self, topic: str, group: str, consumer: str) -> Message | None:
        key = (topic, group)
        pending = self._pending.setdefault(key, {})
        for seq, delivery in sorted(pending.items()):
            if delivery.consumer is None:  # given back by nack: it goes first
                delivery.consumer, delivery.attempts = consumer, delivery.attempts + 1
                delivery.delivered_at = self._clock()
                return self._delivered(seq, delivery)
        seqs = self._topics.get(topic, [])
        index = bisect.bisect_right(seqs, self._cursors.setdefault(key, 0))
        while index < len(seqs):
            seq = seqs[index]
            index += 1
            self._cursors[key] = seq
            if (group, self._messages[seq].id) in self._handled:
                continue
            delivery = _Delivery(consumer=consumer, attempts=1, delivered_at=self._clock())
            pending[seq] = delivery
            return self._delivered(seq, delivery)
        return None

    def _delivered(self, seq: int, delivery: _Delivery) -> Message:
        message = self._messages[seq]
        headers = {**message.headers, "error": delivery.error} if delivery.error else message.headers
        return dataclasses.replace(
            message, attempts=delivery.attempts, receipt=str(seq), headers=headers, consumer=delivery.consumer or ""
        )

    def _delivery(self, message: Message, group: str) -> _Delivery | None:
        seq = int(message.receipt) if message.receipt.isdigit() else 0
        return self._pending.get((message.topic, group), {}).get(seq)

    def _settle(self, message: Message, group: str) -> bool:
        self._pending.get((message.topic, group), {}).pop(int(message.receipt), None)
        if (group, message.id) in self._handled:
            return False
        self._handled[(group, message.id)] = self._clock()
        return True

    async def ack(self, message: Message, group: str, *, publish: Sequence[Outgoing] = ()) -> bool:
        now = self._clock()
        outputs = [outgoing_message(message, check_topic(topic), payload, now=now) for topic, payload in publish]
        if not self._settle(message, group):
            return False
        await self._append(outputs)
        return True

    async def nack(self, message: Message, group: str, error: str) -> None:
        delivery = self._delivery(message, group)
        if delivery is not None and delivery.attempts == message.attempts:  # a claimed one has moved on
            delivery.consumer, delivery.error = None, error
        async with self._published:
            self._published.notify_all()

    async def dead_letter(self, message: Message, group: str, error: str) -> bool:
        if not self._settle(message, group):
            return False
        await self._append([dead_message(message, group, error, now=self._clock())])
        return True

    async def touch(self, message: Message, group: str) -> bool:
        delivery = self._delivery(message, group)
        if delivery is None or delivery.consumer != message.consumer or delivery.attempts != message.attempts:
            return False  # settled, given back, or taken over (the taker's delivery has more attempts)
        delivery.delivered_at = self._clock()
        return True

    async def claim_stale(self, topic: str, group: str, consumer: str, *, idle_s: float) -> list[Message]:
        now = self._clock()
        claimed = []
        for seq, delivery in sorted(self._pending.get((topic, group), {}).items()):
            if delivery.consumer is not None and now - delivery.delivered_at >= idle_s:
                delivery.consumer, delivery.attempts, delivery.delivered_at = consumer, delivery.attempts + 1, now
                claimed.append(self._delivered(seq, delivery))
        return claimed

    async def trim(self, *, before: float, dead: bool = False) -> TrimReport:
        removed = removed_dead = kept = 0
        for topic, seqs in self._topics.items():
            is_dead = topic.endswith(DEAD_SUFFIX)
            if is_dead and not dead:
                continue
            groups = [group for (read, group) in self._cursors if read == topic]
            retained = []
            for seq in seqs:
                if self._messages[seq].published_at >= before:
                    retained.append(seq)
                    continue
                # A topic nobody reads yet keeps its messages for the group that will; dead letters need no reader.
                needed = self._needed(topic, groups, seq) if groups else not is_dead
                if needed:
                    retained.append(seq)
                    kept += 1
                else:
                    del self._messages[seq]
                    if is_dead:
                        removed_dead += 1
                    else:
                        removed += 1
            self._topics[topic] = retained
        present = {message.id for message in self._messages.values()}
        gone = [key for key, at in self._handled.items() if at < before and key[1] not in present]
        for key in gone:
            del self._handled[key]
        return TrimReport(messages=removed, handled=len(gone), dead_letters=removed_dead, kept=kept)

    def _needed(self, topic: str, groups: Sequence[str], seq: int) -> bool:
        """Whether a group reading ``topic`` has not been given message ``seq`` yet, or holds it pending."""
        return any(
            self._cursors[(topic, group)] < seq or seq in self._pending.get((topic, group), {}) for group in groups
        )

    async def topics(self) -> list[TopicStats]:
        groups: dict[str, list[str]] = {}
        for topic, group in self._cursors:
            groups.setdefault(topic, []).append(group)
        stats = []
        for topic in {*self._topics, *groups}:
            if topic.endswith(DEAD_SUFFIX) and topic not in groups:
                continue
            seqs = self._topics.get(topic, [])
            dead = len(self._topics.get(dead_topic(topic), []))
            for group in sorted(groups.get(topic, [""])):
                cursor = self._cursors.get((topic, group), 0)
                stats.append(
                    TopicStats(
                        topic=topic,
                        group=group,
                        messages=len(seqs),
                        pending=len(self._pending.get((topic, group), {})),
                        lag=len(seqs) - bisect.bisect_right(seqs, cursor) if group else 0,
                        dead=dead,
                    )
                )
        return sorted(stats, key=lambda row: (row.topic, row.group))

    async def dead_letters(self, topic: str) -> list[Message]:
        return [self._messages[seq] for seq in self._topics.get(dead_topic(topic), [])]

    async def close(self) -> None:
        return None
