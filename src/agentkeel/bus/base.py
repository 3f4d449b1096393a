"""The ``Bus`` port: topics that specialised agents subscribe to and publish on, with no orchestrator between them.

Rules every backend keeps, checked by the shared bus test suite (``tests/bus/test_bus_contract.py``):

* Each *group* of consumers on a topic sees every message of the topic once per delivery, in publishing order
  (a new group starts at the topic's oldest retained message). Consumers in one group share the work.
* Delivery is **at least once**: a message stays pending for its group until it is settled (acked or sent to the
  dead-letter topic). A consumer that dies leaves it pending; ``claim_stale`` hands it to another consumer once it
  has been idle long enough, with ``attempts`` one higher. ``nack`` gives it back for redelivery at once.
* Settling is **effectively once**: ``ack`` records ``(group, message id)`` as handled, publishes the handler's
  outputs and removes the delivery, all in one transaction. A second settlement of the same message in the same
  group (a slow consumer finishing after another one claimed its message) changes nothing and returns False, so
  the outputs of one message reach the bus once. Messages already handled are never delivered to the group again.
* A message that keeps failing goes to ``<topic>.dead`` with its last error (``dead_letter``), settled the same way.
* A consumer still working on a delivery keeps it with ``touch`` (the worker's heartbeat), which resets its idle
  time: a slow handler is not mistaken for a dead one, and its message is not handled twice. ``touch`` answers
  False once the delivery is no longer this consumer's (taken over, given back or settled).
* Retention is explicit: the bus keeps every message until ``trim`` removes those published before a cut-off
  that no group still needs. A message pending in a group, or not yet delivered to every group reading its topic,
  is never removed, whatever its age; dead letters go only when asked for.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentkeel.errors import ConfigError

DEAD_SUFFIX = ".dead"


def dead_topic(topic: str) -> str:
    """Where a topic's messages go when they keep failing."""
    return f"{topic}{DEAD_SUFFIX}"


def new_message_id() -> str:
    """Sortable by creation time and unique across processes: 12 hex digits of milliseconds, 10 random."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """One message on a topic, as published or as delivered to a group."""

    id: str
    """Unique and sortable; the key of the handled-ids record (a handler dedupes its own side effects by it)."""
    topic: str
    payload: Any
    """Any JSON value."""
    correlation_id: str
    """The piece of work the message belongs to: a reply keeps its parent's, so one trace holds them all."""
    causation_id: str | None = None
    """The id of the message this one answers (None: it starts a piece of work)."""
    attempts: int = 0
    """How many times it has been delivered to this group, this delivery included (0: not delivered yet)."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Free-form metadata; a dead letter carries ``error``, ``dead_from``, ``group`` and ``attempts``."""
    published_at: float = 0.0
    receipt: str = ""
    """How the backend finds this delivery again (a stream entry id, a row number); set on delivery."""
    consumer: str = ""
    """The consumer the delivery was given to; set on delivery. With ``receipt`` and ``attempts`` it names this
    one delivery, so ``touch`` can tell whether it is still this consumer's."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "topic": self.topic,
            "payload": self.payload,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "attempts": self.attempts,
            "headers": dict(self.headers),
            "published_at": self.published_at,
        }


Outgoing = tuple[str, Any]
"""A message a handler publishes: ``(topic, payload)``; it keeps the handled message's correlation id."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TopicStats:
    """How one group keeps up with one topic (``keel bus``)."""

    topic: str
    group: str
    """``""`` for a topic no group reads yet."""
    messages: int
    """Messages published on the topic (and still retained)."""
    pending: int
    """Delivered to the group and not settled yet: being handled, waiting for a retry, or left by a dead consumer."""
    lag: int
    """Published but not yet delivered to the group."""
    dead: int
    """Dead letters of the topic (all groups)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "group": self.group,
            "messages": self.messages,
            "pending": self.pending,
            "lag": self.lag,
            "dead": self.dead,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class TrimReport:
    """What ``Bus.trim`` removed, and what it kept because a group still needs it."""

    messages: int = 0
    """Messages removed (dead letters not included)."""
    handled: int = 0
    """Handled-id records removed: those older than the cut-off whose message is gone."""
    dead_letters: int = 0
    """Dead letters removed (only with ``dead=True``)."""
    kept: int = 0
    """Messages published before the cut-off and kept because a group still needs them: pending (delivered, not
    settled), not yet delivered to every group reading the topic, or on a topic no group reads yet (dead letters
    count here only with ``dead=True``)."""

    def to_json(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "handled": self.handled,
            "dead_letters": self.dead_letters,
            "kept": self.kept,
        }


class DeadLetter(Exception):
    """Raise in a handler to send its message to the dead-letter topic at once, with this reason, without retries."""


class Bus(Protocol):
    """Topics, consumer groups, deliveries and the handled-ids record. Safe to use from several processes at once
    (the in-memory bus: from one process)."""

    url: str
    """Where the bus lives (passwords masked), for messages."""

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        correlation_id: str | None = None,
        causation_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Message:
        """Append a message to the topic; without a correlation id, the message starts a piece of work (its own
        id)."""
        ...

    async def consume(self, topic: str, group: str, consumer: str, *, block_s: float = 0.0) -> Message | None:
        """The group's next message for ``consumer``: one given back by ``nack`` first, else the next new one.
        Waits up to ``block_s`` for one; None if there is none."""
        ...

    async def ack(self, message: Message, group: str, *, publish: Sequence[Outgoing] = ()) -> bool:
        """Settle a delivered message as handled and publish the handler's outputs, in one transaction. False (and
        nothing published) if the group had already settled it."""
        ...

    async def nack(self, message: Message, group: str, error: str) -> None:
        """Give a delivered message back for redelivery (``attempts`` one higher), noting why it failed."""
        ...

    async def dead_letter(self, message: Message, group: str, error: str) -> bool:
        """Settle a delivered message by publishing it on ``<topic>.dead`` with ``error``, in one transaction.
        False (and nothing published) if the group had already settled it."""
        ...

    async def claim_stale(self, topic: str, group: str, consumer: str, *, idle_s: float) -> list[Message]:
        """Take over the group's deliveries that have been idle for ``idle_s`` or more (their consumer died or
        hangs); each comes back with ``attempts`` one higher."""
        ...

    async def touch(self, message: Message, group: str) -> bool:
        """Reset the idle time of a delivery its consumer is still working on, so that ``claim_stale`` leaves it
        alone (the worker's heartbeat). False, changing nothing, if the delivery is no longer this consumer's: taken
        over by another, given back by ``nack``, or settled."""
        ...

    async def trim(self, *, before: float, dead: bool = False) -> TrimReport:
        """Remove the messages published before ``before`` (seconds since the epoch, the bus's clock) that no group
        still needs: every group reading their topic has been given them and none holds them pending. Also removes
        the handled-id records older than ``before`` whose message is gone, and, with ``dead``, the dead letters
        published before ``before`` (the same rule applies if a group reads the dead-letter topic).

        A pending (unsettled) or not-yet-delivered message is never removed, whatever its age; so are the messages
        of a topic no group reads yet (a group that starts later reads them from the oldest). Without ``dead``,
        dead letters stay: they are what an operator inspects. A consumer that still holds a delivery it lost to a
        takeover (slower than the cut-off's age) could settle it a second time once its handled record is gone:
        keep the cut-off far above the slowest handler."""
        ...

    async def topics(self) -> list[TopicStats]:
        """Every topic with each of its groups, sorted by topic then group (dead-letter topics fold into their
        topic's ``dead`` count)."""
        ...

    async def dead_letters(self, topic: str) -> list[Message]:
        """The messages of ``topic`` that went to its dead-letter topic, oldest first."""
        ...

    async def close(self) -> None: ...


def outgoing_message(parent: Message, topic: str, payload: Any, *, now: float) -> Message:
    """A handler's output: a new message in the same piece of work, caused by ``parent``, published at ``now``
    (the bus's clock, which ``trim`` compares its cut-off with)."""
    return Message(
        id=new_message_id(),
        topic=topic,
        payload=payload,
        correlation_id=parent.correlation_id,
        causation_id=parent.id,
        published_at=now,
    )


def dead_message(message: Message, group: str, error: str, *, now: float) -> Message:
    """What goes to ``<topic>.dead`` when ``group`` gives up on ``message``, published at ``now`` (the bus's
    clock)."""
    headers = {**message.headers, "error": error, "dead_from": message.id, "group": group}
    headers["attempts"] = str(message.attempts)
    return Message(
        id=new_message_id(),
        topic=dead_topic(message.topic),
        payload=message.payload,
        correlation_id=message.correlation_id,
        causation_id=message.id,
        headers=headers,
        published_at=now,
    )


def new_message(
    topic: str,
    payload: Any,
    *,
    correlation_id: str | None,
    causation_id: str | None,
    headers: Mapping[str, str] | None,
    now: float,
) -> Message:
    """A message about to be published (its own id is its correlation id when it starts a piece of work)."""
    message_id = new_message_id()
    message = Message(
        id=message_id,
        topic=topic,
        payload=payload,
        correlation_id=correlation_id or message_id,
        causation_id=causation_id,
        headers=dict(headers or {}),
        published_at=now,
    )
    if correlation_id is None:  # a new piece of work: the root of its trace
        from agentkeel.observe.setup import current_live  # the bus's types are imported by observe

        live = current_live()
        if live is not None:
            from agentkeel.observe.bus_spans import origin_span

            live.emit([origin_span(message, "agentkeel")])
    return message


def topic_stats(
    counts: Mapping[str, int],
    groups: Sequence[tuple[str, str]],
    pending: Mapping[tuple[str, str], int],
    lag: Mapping[tuple[str, str], int],
) -> list[TopicStats]:
    """``Bus.topics`` from a backend's figures: messages per topic, the (topic, group) pairs that read, and each
    pair's pending and lag; a topic no group reads yet gets a row with group ``""``."""
    read = {topic for topic, _ in groups}
    rows = [*groups, *((topic, "") for topic in counts if topic not in read and not topic.endswith(DEAD_SUFFIX))]
    return sorted(
        (
            TopicStats(
                topic=topic,
                group=group,
                messages=counts.get(topic, 0),
                pending=pending.get((topic, group), 0),
                lag=lag.get((topic, group), 0),
                dead=counts.get(dead_topic(topic), 0),
            )
            for topic, group in rows
        ),
        key=lambda row: (row.topic, row.group),
    )


def check_topic(topic: str) -> str:
    """A topic name is non-empty printable text without spaces."""
    if not topic or any(char.isspace() for char in topic) or not topic.isprintable():
        raise ConfigError(f"a topic name is non-empty text without spaces, e.g. 'research.done': got {topic!r}")
    return topic
