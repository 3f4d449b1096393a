"""Messages as the SQL buses (SQLite, PostgreSQL) keep them: one row per message, the delivery's row number as its
receipt."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from agentkeel.bus.base import Message


def row_seq(message: Message) -> int:
    """The row of a delivered message (0, which names none, for one that was not delivered)."""
    return int(message.receipt) if message.receipt.isdigit() else 0


def row_message(row: Sequence[Any], *, attempts: int, error: str = "", consumer: str = "") -> Message:
    """A message from its row (seq, id, topic, payload, correlation id, causation id, headers, published at), as
    delivered for the ``attempts``-th time to ``consumer``; ``error``: why the last attempt failed."""
    seq, message_id, topic, payload, correlation_id, causation_id, headers, published_at = row
    decoded: dict[str, str] = json.loads(headers)
    if error:
        decoded["error"] = error
    return Message(
        id=message_id,
        topic=topic,
        payload=json.loads(payload),
        correlation_id=correlation_id,
        causation_id=causation_id,
        attempts=attempts,
        headers=decoded,
        published_at=published_at,
        receipt=str(seq),
        consumer=consumer,
    )
