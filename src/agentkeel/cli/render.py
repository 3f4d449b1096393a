"""What ``keel`` prints: Rich on a terminal, plain text when piped, JSON on request.

Rich decides whether stdout is a terminal (and honours ``NO_COLOR`` / ``FORCE_COLOR``); when it is not, no
ANSI codes are written and tables become plain aligned columns that ``grep`` and ``cut`` can read.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console, JustifyMethod
from rich.table import Table
from rich.text import Text

from agentkeel.core.events import PlannedCall
from agentkeel.result import RunResult
from agentkeel.stores.base import RunRow

PLAIN_WIDTH = 200
"""Line width for piped output, where nobody reads it on an 80-column screen."""

STATUS_STYLES = {
    "completed": "green",
    "failed": "red",
    "paused": "yellow",
    "cancelled": "magenta",
    "running": "cyan",
    "rolling_back": "yellow",
    "rolled_back": "blue",
}

_RUN_COLUMNS = ("ID", "AGENT", "STATUS", "STEPS", "TOKENS", "COST", "AGE", "TASK")
_RIGHT_ALIGNED = frozenset({"STEPS", "TOKENS", "COST"})


def make_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, emoji=False)
    if not console.is_terminal:
        console.width = PLAIN_WIDTH
    return console


class Output:
    """Where a command writes: results to stdout, errors and progress notes to stderr."""

    def __init__(self, *, as_json: bool = False) -> None:
        self.as_json = as_json
        self.out = make_console()
        self.err = make_console(stderr=True)

    @property
    def rich(self) -> bool:
        return self.out.is_terminal

    def print(self, *items: Any) -> None:
        """Lines of text. Piped, a long line stays one line (no hard wraps) so that tools can read it."""
        self.out.print(*items, soft_wrap=not self.rich)

    def show(self, renderable: Any) -> None:
        """A tree, a table or a rule: laid out to the width (a piped tree wraps rather than loses its ends)."""
        self.out.print(renderable)

    def note(self, text: str) -> None:
        """A remark about progress, on stderr so that it never mixes with ``--json`` output."""
        self.err.print(Text(text, style="dim"), soft_wrap=not self.err.is_terminal)

    def error(self, message: str) -> None:
        self.err.print(Text(f"error: {message}", style="bold red"), soft_wrap=not self.err.is_terminal)

    def json(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()


# -- small formats ----------------------------------------------------------------------------------------


def status_text(status: str, reason: str = "") -> Text:
    label = f"{status}({reason})" if reason and reason != status else status
    return Text(label, style=STATUS_STYLES.get(status, ""))


def tokens(count: int) -> str:
    return f"{count:,}"


def cost(usd: float) -> str:
    return f"${usd:.4f}"


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for size, unit in ((86_400, "d"), (3_600, "h"), (60, "m")):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f}s"


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def shorten(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else f"{flat[: limit - 1]}…"


# -- a run's outcome --------------------------------------------------------------------------------------


def result_json(result: RunResult) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    data["usage"]["total_tokens"] = result.usage.total_tokens
    data["needs_attention"] = list(result.needs_attention)
    return data


def print_outcome(
    out: Output, result: RunResult, *, agent: str = "", calls: dict[str, str] | None = None, where: str = ""
) -> None:
    """The outcome of driving a run. ``calls`` describes the calls waiting for a decision, by call id; ``where``
    is the ``--store URL`` the follow-up commands need (empty for the default store)."""
    if out.as_json:
        out.json(result_json(result))
        return
    head = Text.assemble(status_text(result.status, result.reason), "  run ", (result.run_id, "bold"))
    if agent:
        head.append(f"  {agent}")
    out.print(head)
    if result.output:
        out.print(Text(result.output))
    if result.detail and result.status != "completed":
        style = "yellow" if result.status == "paused" else "red" if result.status == "failed" else ""
        out.print(Text(result.detail, style=style))
    if result.mode == "dry_run":
        print_plan(out, result.run_id, result.plan)
    for call in result.needs_attention:
        described = (calls or {}).get(call, "")
        out.print(Text(f"  {described}" if described else f"  call {call}", style="bold"))
        out.print(Text(f"    keel resolve {result.run_id} {call} --result JSON | --retry | --skip{where}"))
    errors = f" ({result.tool_errors} failed)" if result.tool_errors else ""
    out.print(
        Text(
            f"{plural(result.steps, 'step')} · {tokens(result.usage.total_tokens)} tokens · {cost(result.cost_usd)} · "
            f"{plural(result.tool_calls, 'tool call')}{errors} · {duration(result.duration_s)}",
            style="dim",
        )
    )
    out.print(Text(f"keel show {result.run_id}{where}", style="dim"))


def print_plan(out: Output, run_id: str, plan: Sequence[PlannedCall]) -> None:
    """A dry run's plan: its write calls in order, each with its preview (or the mark that it has none)."""
    if not plan:
        out.print(Text("the dry run planned no write call", style="dim"))
        return
    out.print(Text(f"plan: {plural(len(plan), 'write call')} (nothing was written)", style="bold"))
    for number, planned in enumerate(plan, 1):
        args = json.dumps(planned.arguments, ensure_ascii=False)
        out.print(Text.assemble(f"  {number}. ", (planned.name, "bold cyan"), f" {args}"))
        if planned.has_preview:
            out.print(Text(f"     would: {json.dumps(planned.preview, ensure_ascii=False)}"))
        else:
            out.print(Text("     (no preview: the tool declares none)", style="yellow"))
    out.print(Text(f"approve and carry it out: keel apply {run_id}", style="dim"))


# -- the runs table ---------------------------------------------------------------------------------------


def row_json(row: RunRow) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["tokens"] = row.input_tokens + row.output_tokens
    return data


def _cells(row: RunRow, now: float) -> tuple[str, ...]:
    return (
        row.run_id,
        row.agent,
        status_text(row.status, row.reason).plain,
        str(row.steps),
        tokens(row.input_tokens + row.output_tokens),
        cost(row.cost_usd),
        age(now - row.created_at),
        shorten(row.task, 48),
    )


def print_runs(out: Output, rows: Sequence[RunRow], *, now: float | None = None, title: str = "") -> None:
    """The runs table: a Rich table on a terminal, aligned plain columns when piped, a list with ``--json``."""
    if out.as_json:
        out.json([row_json(row) for row in rows])
        return
    now = time.time() if now is None else now
    if not rows:
        out.print('no runs yet: `keel run FILE.py:AGENT "task"` or `keel demo` starts some')
        return
    cells = [_cells(row, now) for row in rows]
    widths = [max(len(name), *(len(values[i]) for values in cells)) for i, name in enumerate(_RUN_COLUMNS)]
    if out.rich:
        out.show(_runs_table(rows, cells, widths, out.out.width, title))
        return
    if title:
        out.print(title)
    for values in (_RUN_COLUMNS, *cells):
        line = "  ".join(
            value.rjust(width) if name in _RIGHT_ALIGNED else value.ljust(width)
            for name, value, width in zip(_RUN_COLUMNS, values, widths, strict=True)
        )
        out.print(Text(line.rstrip()))


def _runs_table(
    rows: Sequence[RunRow], cells: list[tuple[str, ...]], widths: list[int], room: int, title: str
) -> Table:
    """A Rich table that fits the terminal: the task column goes first, then cost and age, never the id."""
    shown = list(range(len(_RUN_COLUMNS)))
    task = _RUN_COLUMNS.index("TASK")
    needed = [min(width, 20) if i == task else width for i, width in enumerate(widths)]  # the task may wrap
    for optional in (task, _RUN_COLUMNS.index("COST"), _RUN_COLUMNS.index("AGE")):
        if sum(needed[i] + 3 for i in shown) <= room:
            break
        shown.remove(optional)
    table = Table(title=title or None, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD)
    for i in shown:
        name = _RUN_COLUMNS[i]
        justify: JustifyMethod = "right" if name in _RIGHT_ALIGNED else "left"
        table.add_column(name.lower(), justify=justify, no_wrap=name != "TASK")
    for row, values in zip(rows, cells, strict=True):
        styled = [Text(value) for value in values]
        styled[0].stylize("bold")
        styled[2] = status_text(row.status, row.reason)
        table.add_row(*(styled[i] for i in shown))
    return table
