"""The in-process bus: topics in dicts, for tests and for agents that share one process. Nothing survives it."""

from __future__ import annotations

import asyncio
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
    """Topics, groups and the handled-ids record in one process's memory."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.url = "memory://"
        self._clock = clock
        self._topics: dict[str, list[Message]] = {}
        self._cursors: dict[tuple[str, str], int] = {}  # (topic, group) -> messages delivered so far
        self._pending: dict[tuple[str, str], dict[int, _Delivery]] = {}  # (topic, group) -> position -> delivery
        self._handled: set[tuple[str, str]] = set()  # (group, message id)
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
            self._topics.setdefault(message.topic, []).append(message)
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
        messages = self._topics.get(topic, [])
        for position, delivery in sorted(pending.items()):
            if delivery.consumer is None:  # given back by nack: it goes first
                delivery.consumer, delivery.attempts = consumer, delivery.attempts + 1
                delivery.delivered_at = self._clock()
                return self._delivered(messages[position], position, delivery)
        cursor = self._cursors.setdefault(key, 0)
        while cursor < len(messages):
            position, cursor = cursor, cursor + 1
            self._cursors[key] = cursor
            if (group, messages[position].id) in self._handled:
                continue
            delivery = _Delivery(consumer=consumer, attempts=1, delivered_at=self._clock())
            pending[position] = delivery
            return self._delivered(messages[position], position, delivery)
        return None

    @staticmethod
    def _delivered(message: Message, position: int, delivery: _Delivery) -> Message:
        headers = {**message.headers, "error": delivery.error} if delivery.error else message.headers
        return dataclasses.replace(message, attempts=delivery.attempts, receipt=str(position), headers=headers)

    def _settle(self, message: Message, group: str) -> bool:
        self._pending.get((message.topic, group), {}).pop(int(message.receipt), None)
        if (group, message.id) in self._handled:
            return False
        self._handled.add((group, message.id))
        return True

    async def ack(self, message: Message, group: str, *, publish: Sequence[Outgoing] = ()) -> bool:
        outputs = [outgoing_message(message, check_topic(topic), payload) for topic, payload in publish]
        if not self._settle(message, group):
            return False
        await self._append(outputs)
        return True

    async def nack(self, message: Message, group: str, error: str) -> None:
        delivery = self._pending.get((message.topic, group), {}).get(int(message.receipt))
        if delivery is not None and delivery.attempts == message.attempts:  # a claimed one has moved on
            delivery.consumer, delivery.error = None, error
        async with self._published:
            self._published.notify_all()

    async def dead_letter(self, message: Message, group: str, error: str) -> bool:
        if not self._settle(message, group):
            return False
        await self._append([dead_message(message, group, error)])
        return True

    async def claim_stale(self, topic: str, group: str, consumer: str, *, idle_s: float) -> list[Message]:
        now = self._clock()
        messages = self._topics.get(topic, [])
        claimed = []
        for position, delivery in sorted(self._pending.get((topic, group), {}).items()):
            if delivery.consumer is not None and now - delivery.delivered_at >= idle_s:
                delivery.consumer, delivery.attempts, delivery.delivered_at = consumer, delivery.attempts + 1, now
                claimed.append(self._delivered(messages[position], position, delivery))
        return claimed

    async def topics(self) -> list[TopicStats]:
        groups: dict[str, list[str]] = {}
        for topic, group in self._cursors:
            groups.setdefault(topic, []).append(group)
        stats = []
        for topic, messages in self._topics.items():
            if topic.endswith(DEAD_SUFFIX) and topic not in groups:
                continue
            dead = len(self._topics.get(dead_topic(topic), []))
            for group in sorted(groups.get(topic, [""])):
                stats.append(
                    TopicStats(
                        topic=topic,
                        group=group,
                        messages=len(messages),
                        pending=len(self._pending.get((topic, group), {})),
                        lag=len(messages) - self._cursors.get((topic, group), 0) if group else 0,
                        dead=dead,
                    )
                )
        return sorted(stats, key=lambda row: (row.topic, row.group))

    async def dead_letters(self, topic: str) -> list[Message]:
        return list(self._topics.get(dead_topic(topic), []))

    async def close(self) -> None:
        return None
