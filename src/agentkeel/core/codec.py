"""Events to JSON and back, for stores that keep bytes. One schema for every backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, get_args

from pydantic import Field, TypeAdapter, ValidationError

from agentkeel.core.events import Event
from agentkeel.errors import JournalError

_EVENT: TypeAdapter[Event] = TypeAdapter(Annotated[Event, Field(discriminator="kind")])


# One serializer per kind: dispatching on the union costs more than the encoding itself.
_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    kind.__dataclass_fields__["kind"].default: TypeAdapter(kind).serializer.to_json for kind in get_args(Event)
}


def encode_event(event: Event) -> bytes:
    return _ENCODERS[event.kind](event)


def decode_event(data: bytes | str, *, run_id: str = "", seq: int = 0) -> Event:
    try:
        return _EVENT.validate_json(data)
    except ValidationError as exc:
        where = f"run {run_id}, event {seq}: " if run_id else ""
        raise JournalError(
            f"{where}the journal holds an event this version of agentkeel cannot read ({exc.error_count()} "
            f"problems, first: {exc.errors()[0]['msg']}). Was it written by a newer version?"
        ) from exc


_JOURNAL: TypeAdapter[list[Event]] = TypeAdapter(list[Annotated[Event, Field(discriminator="kind")]])


def decode_journal(datas: list[bytes], *, run_id: str = "") -> list[Event]:
    """A whole journal at once (one parse, a third faster than event by event); on an unreadable event, the
    error names it."""
    try:
        return _JOURNAL.validate_json(b"[" + b",".join(datas) + b"]")
    except ValidationError:
        return [decode_event(data, run_id=run_id, seq=seq) for seq, data in enumerate(datas, start=1)]
