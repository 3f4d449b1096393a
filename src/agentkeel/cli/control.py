"""``keel kill`` and ``keel switches``: the kill switches of a store, set, lifted and listed from the shell.

A switch lives in the store, so it reaches every process using that store before its next model or tool call
(``agentkeel/switches.py`` says what each kind does). These commands register on ``app``; ``app.py`` imports
this module once its plumbing is defined.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from agentkeel import switches as kill_switches
from agentkeel.cli import exits
from agentkeel.cli.app import JsonOption, StoreOption, _execute, _opened, _operator, app
from agentkeel.cli.exits import UsageProblem
from agentkeel.cli.render import Output, age, shorten
from agentkeel.stores.base import Switch

_COLUMNS = ("SCOPE", "TARGET", "BY", "AGE", "REASON")
"""The reason last: it is free text, the other columns are one word each."""
_EVERYTHING = "(everything)"
"""How a switch on everything shows in the TARGET column (one word, so that piped columns split)."""


@app.command("kill")
def kill_command(
    tool: Annotated[
        str | None,
        typer.Option("--tool", help="Disable this tool: its calls return a message to the model instead of running."),
    ] = None,
    agent: Annotated[
        str | None,
        typer.Option("--agent", help="Disable this agent: its live runs end cancelled, new ones are refused."),
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Disable every agent, as --agent does one.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why: the journals of the runs it stops and the model read it.")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", show_default=False, help="Who sets it. Default: your OS user name.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Lift the switch on the tool, agent or all instead.")] = False,
    store: StoreOption = None,
) -> None:
    """Disable a tool, an agent or everything in every process using the store, before its next call (--clear
    enables it again)."""
    out = Output()

    async def work() -> int:
        scope, target = _chosen(tool, agent, everything)
        named = _named(scope, target)
        if clear:
            async with _opened(store) as opened:
                if not await kill_switches.revive(opened, tool=tool, agent=agent, everything=everything):
                    raise UsageProblem(f"no kill switch on {named} is in force: `keel switches` lists those that are")
            out.print(f"enabled {named} again{_AFTER_CLEAR[scope]}")
            return exits.OK
        if reason is None or not reason.strip():
            raise UsageProblem(
                "say why with --reason TEXT, e.g. --reason 'fraud investigation': the journals of the runs it stops, "
                "and the model, read it"
            )
        who = by if by is not None and by.strip() else _operator()
        async with _opened(store) as opened:
            await kill_switches.kill(opened, tool=tool, agent=agent, everything=everything, by=who, reason=reason)
        undo = f"`keel kill --clear {_flag(scope, target)}` enables it again"
        out.print(f"disabled {named} (by {who}: {reason}){_EFFECT[scope]}; {undo}")
        return exits.OK

    _execute(out, work)


@app.command("switches")
def switches_command(store: StoreOption = None, as_json: JsonOption = False) -> None:
    """List the kill switches in force: scope, target, who set them, why, and how long ago."""
    out = Output(as_json=as_json)

    async def work() -> int:
        async with _opened(store) as opened:
            print_switches(out, await kill_switches.active_switches(opened))
        return exits.OK

    _execute(out, work)


_EFFECT = {
    "tool": ": its calls return a message to the model instead of running, in every process using this store",
    "agent": ": its runs that have not ended stop before their next call and end cancelled; new runs are refused",
    "all": ": every run that has not ended stops before its next call and ends cancelled; new runs are refused",
}
_AFTER_CLEAR = {
    "tool": "",
    "agent": ": new runs start; the runs it cancelled stay cancelled",
    "all": ": new runs start; the runs it cancelled stay cancelled",
}


def _chosen(tool: str | None, agent: str | None, everything: bool) -> tuple[str, str]:
    chosen = [(scope, name) for scope, name in (("tool", tool), ("agent", agent)) if name is not None]
    if everything:
        chosen.append(("all", ""))
    if len(chosen) != 1:
        said = f"you gave {' and '.join(_flag(*pair) for pair in chosen)}" if chosen else "you gave none"
        raise UsageProblem(f"choose exactly one of --tool NAME, --agent NAME or --all; {said}")
    scope, target = chosen[0]
    if scope != "all" and not target.strip():
        raise UsageProblem(f"--{scope} needs a name, e.g. --{scope} {'refund' if scope == 'tool' else 'support'}")
    return scope, target


def _named(scope: str, target: str) -> str:
    return "every agent" if scope == "all" else f"{scope} {target}"


def _flag(scope: str, target: str) -> str:
    return "--all" if scope == "all" else f"--{scope} {target}"


def switch_json(switch: Switch) -> dict[str, object]:
    return dataclasses.asdict(switch)


def print_switches(out: Output, switches: Sequence[Switch], *, now: float | None = None) -> None:
    """The switches table: a Rich table on a terminal, aligned plain columns when piped, a list with ``--json``."""
    if out.as_json:
        out.json([switch_json(switch) for switch in switches])
        return
    if not switches:
        out.print("no kill switches in force: `keel kill --tool NAME | --agent NAME | --all --reason TEXT` sets one")
        return
    now = time.time() if now is None else now
    cells: list[tuple[str, ...]] = [
        (switch.scope, switch.target or _EVERYTHING, switch.by, age(now - switch.at), shorten(switch.reason, 80))
        for switch in switches
    ]
    if out.rich:
        table = Table(header_style="bold", box=box.SIMPLE_HEAD)
        for name in _COLUMNS:
            table.add_column(name.lower(), no_wrap=name != "REASON")
        for values in cells:
            table.add_row(Text(values[0], style="red"), Text(values[1], style="bold"), *map(Text, values[2:]))
        out.show(table)
        return
    widths = [max(len(name), *(len(values[i]) for values in cells)) for i, name in enumerate(_COLUMNS)]
    for values in (_COLUMNS, *cells):
        out.print(Text("  ".join(value.ljust(width) for value, width in zip(values, widths, strict=True)).rstrip()))
