"""What a durable store writes for an event: its JSON, with every secret the process knows replaced by a marker
(``agentkeel/redaction.py``), so that no journal, and nothing read from one, holds a secret."""

from __future__ import annotations

from agentkeel.core.codec import encode_event
from agentkeel.core.events import Event
from agentkeel.redaction import redactor


def journal_bytes(event: Event) -> bytes:
    return redactor().json_bytes(encode_event(event))
