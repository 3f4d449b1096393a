"""``keel bus``: the topics of a message bus, how far each group lags, and the dead letters with their errors."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.text import Text

from agentkeel.bus.base import Message, TopicStats
from agentkeel.bus.open import DEFAULT_BUS_URL, open_bus
from agentkeel.cli import exits
from agentkeel.cli.app import JsonOption, _execute, app
from agentkeel.cli.render import Output

BusOption = Annotated[
    str | None,
    typer.Option(
        "--bus",
        envvar="KEEL_BUS",
        show_default=False,
        help=f"Where the bus lives: sqlite:///path.db, redis://host:6379/0 or memory://. Default: {DEFAULT_BUS_URL}.",
    ),
]
_COLUMNS = ("TOPIC", "GROUP", "MESSAGES", "PENDING", "LAG", "DEAD")


@app.command("bus")
def bus_command(
    dead: Annotated[
        str | None,
        typer.Option(
            "--dead", metavar="TOPIC", show_default=False, help="List TOPIC's dead letters with their errors."
        ),
    ] = None,
    bus: BusOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the bus's topics: for each group, the messages pending (delivered, not settled), the lag (not yet
    delivered) and the dead letters. With --dead TOPIC, the messages that went to TOPIC.dead and why."""
    out = Output(as_json=as_json)

    async def work() -> int:
        opened = open_bus(bus)
        try:
            if dead is None:
                print_topics(out, await opened.topics(), opened.url)
            else:
                print_dead_letters(out, dead, await opened.dead_letters(dead))
        finally:
            await opened.close()
        return exits.OK

    _execute(out, work)


def print_topics(out: Output, rows: Sequence[TopicStats], url: str) -> None:
    if out.as_json:
        out.json([row.to_json() for row in rows])
        return
    if not rows:
        out.print(f"no topics yet on {url}")
        return
    cells = [
        (row.topic, row.group or "-", str(row.messages), str(row.pending), str(row.lag), str(row.dead)) for row in rows
    ]
    widths = [max(len(name), *(len(values[i]) for values in cells)) for i, name in enumerate(_COLUMNS)]
    for values in (_COLUMNS, *cells):
        line = "  ".join(
            value.ljust(width) if i < 2 else value.rjust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        )
        out.print(Text(line.rstrip()))


def print_dead_letters(out: Output, topic: str, letters: Sequence[Message]) -> None:
    if out.as_json:
        out.json([letter.to_json() for letter in letters])
        return
    if not letters:
        out.print(f"no dead letters on {topic}")
        return
    for letter in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.published_at))
        headers = letter.headers
        source, group, attempts = (headers.get(name, "?") for name in ("dead_from", "group", "attempts"))
        out.print(
            Text(f"{source}  group {group}  after {attempts} attempt(s)  {when}  correlation {letter.correlation_id}")
        )
        out.print(Text(f"  error: {headers.get('error', '')}"))
        out.print(Text(f"  payload: {_short(letter.payload)}"))


def _short(payload: object, limit: int = 200) -> str:
    text = json.dumps(payload, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
