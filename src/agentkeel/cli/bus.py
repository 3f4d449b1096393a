"""``keel bus``: the topics of a message bus, how far each group lags, and the dead letters with their errors."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.text import Text

from agentkeel.bus.base import Message, TopicStats, TrimReport
from agentkeel.bus.open import DEFAULT_BUS_URL, open_bus
from agentkeel.bus.routes import route_workers, serve
from agentkeel.cli import exits
from agentkeel.cli.app import JsonOption, _execute, app
from agentkeel.cli.exits import UsageProblem
from agentkeel.cli.load import load_routes
from agentkeel.cli.render import Output, plural
from agentkeel.cli.since import EXAMPLES, parse_since
from agentkeel.gc_tuning import tune_gc
from agentkeel.redaction import redactor

BusOption = Annotated[
    str | None,
    typer.Option(
        "--bus",
        envvar="KEEL_BUS",
        show_default=False,
        help=(
            "Where the bus lives: sqlite:///path.db, postgresql://user@host:5432/db, redis://host:6379/0 or "
            f"memory://. Default: {DEFAULT_BUS_URL}."
        ),
    ),
]
_COLUMNS = ("TOPIC", "GROUP", "MESSAGES", "PENDING", "LAG", "DEAD")


bus_app = typer.Typer(
    name="bus",
    help="The message bus: topics, lag and dead letters (no subcommand); publish a message; serve routes; trim "
    "old messages.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(bus_app)


@bus_app.callback()
def bus_command(
    ctx: typer.Context,
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
    delivered) and the dead letters. With --dead TOPIC, the messages that went to TOPIC.dead and why.
    `keel bus publish` sends a message; `keel bus work` serves an application's routes; `keel bus trim` removes
    old messages."""
    if ctx.invoked_subcommand is not None:
        return
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


@bus_app.command("publish")
def publish_command(
    topic: Annotated[str, typer.Argument(help="The topic, e.g. research.requested.")],
    payload: Annotated[
        str, typer.Argument(help="The payload: JSON (an object, a list, a number...) or, if it is not JSON, text.")
    ],
    correlation_id: Annotated[
        str | None,
        typer.Option(
            "--correlation-id", show_default=False, help="Join an existing piece of work (default: start one)."
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", metavar="KEY=VALUE", show_default=False, help="A header; repeat for more."),
    ] = None,
    bus: BusOption = None,
    as_json: JsonOption = False,
) -> None:
    """Publish one message on TOPIC; prints its id and its correlation id (the piece of work it belongs to)."""
    out = Output(as_json=as_json)

    async def work() -> int:
        headers = _headers(header or [])
        opened = open_bus(bus)
        try:
            message = await opened.publish(topic, _payload(payload), correlation_id=correlation_id, headers=headers)
        finally:
            await opened.close()
        if out.as_json:
            out.json(message.to_json())
        else:
            out.print(Text(f"published {message.id} on {topic} (correlation {message.correlation_id})"))
        return exits.OK

    _execute(out, work)


@bus_app.command("work")
def work_command(
    routes: Annotated[
        str,
        typer.Argument(
            metavar="FILE.py:ROUTES",
            help="The routes to serve: a list of Route(topic, agent, reply=...) objects, or a function returning "
            "one, e.g. examples/bus_chain.py:routes.",
        ),
    ],
    until_idle: Annotated[
        float | None,
        typer.Option(
            "--until-idle",
            metavar="SECONDS",
            show_default=False,
            help="Stop once no route has had a message for SECONDS (every topic drained); default: run until "
            "interrupted.",
        ),
    ] = None,
    bus: BusOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve routes: each route's agent answers its topic's messages, as one consumer of the agent's group. Run
    as many of these processes as you like: a group's consumers share its messages, and a message whose consumer
    died goes to another one."""
    out = Output(as_json=as_json)
    if until_idle is not None and until_idle <= 0:
        out.error(f"--until-idle takes a number of seconds above 0, e.g. --until-idle 5: got {until_idle}")
        raise typer.Exit(exits.USAGE)

    async def work() -> int:
        loaded = load_routes(routes)
        opened = open_bus(bus)
        try:
            workers = route_workers(opened, loaded)
            tune_gc()  # a server: everything is loaded, the runs come next (see gc_tuning.py)
            if not out.as_json:
                for route in loaded:
                    reply = f" → {route.reply}" if route.reply else ""
                    out.print(Text(f"serving {route.topic} → {route.agent.name}{reply} on {opened.url}"))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):  # finish the messages in hand, then stop
                loop.add_signal_handler(signum, stop.set)
            try:
                handled = await serve(
                    opened, workers, stop=stop, idle_s=until_idle, block_s=min(0.5, until_idle or 0.5)
                )
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        finally:
            await opened.close()
        if out.as_json:
            out.json({"handled": handled})
        else:
            why = f"no message for {until_idle:g} s" if until_idle is not None and stop.is_set() else "asked to"
            out.print(Text(f"handled {handled} message(s); stopped ({why})"))
        return exits.OK

    _execute(out, work)


@bus_app.command("trim")
def trim_command(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            metavar="AGE",
            show_default=False,
            help="Remove what was published before this: a duration back from now (7d, 24h, 2w) or an ISO date.",
        ),
    ],
    dead: Annotated[
        bool, typer.Option("--dead", help="Remove the dead letters older than AGE too (kept by default).")
    ] = False,
    bus: BusOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove the messages published before AGE that every group reading their topic has settled, and the
    handled-id records of the messages gone. A message still pending (delivered, not settled) or not yet delivered
    to every group reading its topic is never removed, whatever its age; nor is one on a topic no group reads yet.
    Dead letters stay unless --dead is given."""
    out = Output(as_json=as_json)
    try:
        before = parse_since(older_than, time.time())
    except UsageProblem:
        out.error(f"--older-than takes {EXAMPLES}: got {older_than!r}")
        raise typer.Exit(exits.USAGE) from None

    async def work() -> int:
        opened = open_bus(bus)
        try:
            report = await opened.trim(before=before, dead=dead)
        finally:
            await opened.close()
        print_trim(out, report, before=before, dead=dead, url=opened.url)
        return exits.OK

    _execute(out, work)


def print_trim(out: Output, report: TrimReport, *, before: float, dead: bool, url: str) -> None:
    if out.as_json:
        out.json({"bus": url, "before": before, **report.to_json()})
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(before))
    removed = [plural(report.messages, "message"), plural(report.handled, "handled record")]
    if dead:
        removed.append(plural(report.dead_letters, "dead letter"))
    out.print(Text(f"removed {', '.join(removed)} from before {when} on {url}"))
    out.print(
        Text(
            f"kept {plural(report.kept, 'older message')} still needed: pending, not yet delivered to every group "
            "reading its topic, or on a topic no group reads yet (never removed, whatever their age)"
        )
    )
    if not dead:
        out.print(Text("dead letters kept: --dead removes those older than the cut-off too"))


def _payload(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _headers(pairs: Sequence[str]) -> dict[str, str]:
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageProblem(f"--header takes KEY=VALUE, e.g. --header source=crm: got {pair!r}")
        headers[key.strip()] = value
    return headers


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
        red = redactor()
        out.json([json.loads(red.json_bytes(json.dumps(letter.to_json()).encode())) for letter in letters])
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
        red = redactor()
        out.print(Text(f"  error: {red.text(headers.get('error', ''))}"))
        out.print(Text(f"  payload: {red.text(_short(letter.payload))}"))


def _short(payload: object, limit: int = 200) -> str:
    text = json.dumps(payload, ensure_ascii=False)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
