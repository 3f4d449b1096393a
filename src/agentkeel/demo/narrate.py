"""The demo's transcript of a run, read back from its journal: what the customer wrote, what the agent said,
each tool call with its outcome, each failed attempt."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from agentkeel.cli.render import Output, plural, shorten, status_text, tokens
from agentkeel.core.events import Event, ModelResponded, ToolCallFinished, ToolCallRetrying, ToolCallStarted
from agentkeel.result import RunResult

MAX_WIDTH = 150
"""The most of a tool's arguments, result or error one line shows."""


def say(out: Output, who: str, text: str, style: str = "", *, width: int = 8) -> None:
    """A speaker and what they said; on a terminal, wrapped lines stay indented under the text."""
    if not out.rich:
        out.print(Text.assemble((f"{who:<{width}} ", "bold"), text))
        return
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=width, no_wrap=True)
    grid.add_column()
    grid.add_row(Text(who, style=f"bold {style}".strip()), Text(text, style=style))
    out.show(grid)


def transcript(out: Output, events: Sequence[Event]) -> None:
    """One line per thing that happened, in order."""
    room = max(40, min(MAX_WIDTH, out.out.width - 8))
    for event in events:
        if isinstance(event, ModelResponded):
            if event.response.text:
                say(out, "agent", event.response.text, "cyan")
        elif isinstance(event, ToolCallStarted):
            args = shorten(json.dumps(event.arguments, ensure_ascii=False), room - len(event.name))
            out.print(Text.assemble("  → ", (event.name, "bold"), f" {args}"))
        elif isinstance(event, ToolCallRetrying):
            failure = event.error
            head = f"    ↻ attempt {event.attempt} failed, retrying in {event.delay_s:g}s: "
            out.print(Text(head + shorten(failure.message, room + 8 - len(head)), style="yellow"))
        elif isinstance(event, ToolCallFinished):
            _finished(out, event, room)
        elif event.kind == "tool_call_resumed":
            why = getattr(event, "why", "") or "its contract allows it"
            call = getattr(event, "call", "")
            out.print(Text(f"  ↺ call {call} runs again ({why}), with the same idempotency key", style="yellow"))


def _finished(out: Output, event: ToolCallFinished, room: int) -> None:
    if event.error is None:
        attempts = f" (attempt {event.attempts})" if event.attempts > 1 else ""
        out.print(Text(f"    ✓ {shorten(event.content, room - len(attempts))}{attempts}", style="green"))
        return
    if event.error.kind == "invalid_arguments":
        out.print(Text.assemble("  → ", (event.name, "bold"), " (rejected before it ran)"))
    say(out, "    ✗", f"{event.error.kind}: {event.error.message}", "red", width=5)


def ending(out: Output, result: RunResult) -> None:
    line = Text.assemble(
        status_text(result.status, result.reason),
        f" · {plural(result.steps, 'step')} · {plural(result.tool_calls, 'tool call')} · "
        f"{tokens(result.usage.total_tokens)} tokens · run {result.run_id}",
    )
    line.stylize("dim", len(result.status) + len(result.reason) + 2 if result.reason else len(result.status))
    out.print(line)
