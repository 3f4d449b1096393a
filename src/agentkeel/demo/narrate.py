"""The demo's transcript of a run, read back from its journal: what the customer wrote, what the agent said,
each tool call with its outcome, each failed attempt, and what the controls did (a call held for approval, a
person's decision, the engine speaking to the model, a compaction, a note, a rollback and its compensations)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from agentkeel.cli.render import Output, plural, shorten, status_text, tokens
from agentkeel.core.events import (
    ApprovalRequested,
    CallApproved,
    CallRejected,
    CompensationFinished,
    CompensationStarted,
    ContextCompacted,
    Event,
    Intervened,
    ModelResponded,
    NoteWritten,
    RollbackStarted,
    ToolCallFinished,
    ToolCallRetrying,
    ToolCallStarted,
)
from agentkeel.demo.tickets import Ticket
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


def heading(out: Output, number: int, total: int, ticket: Ticket) -> None:
    out.print()
    out.show(Rule(Text(f"Ticket {number}/{total}: {ticket.title}"), align="left"))
    say(out, "customer", ticket.task)


def transcript(out: Output, events: Sequence[Event]) -> None:
    """One line per thing that happened, in order. A call that repeats an earlier one exactly (the same tool,
    arguments and outcome) is one line, so that a spiral reads as one."""
    room = max(40, min(MAX_WIDTH, out.out.width - 8))
    finished = {e.call: e for e in events if isinstance(e, ToolCallFinished)}
    seen: dict[tuple[str, str, str], int] = {}
    folded: set[str] = set()
    for event in events:
        if isinstance(event, ModelResponded):
            if event.response.text:
                say(out, "agent", event.response.text, "cyan")
        elif isinstance(event, ToolCallStarted):
            args = json.dumps(event.arguments, ensure_ascii=False)
            outcome = finished.get(event.call)
            key = (event.name, args, outcome.content if outcome is not None else "")
            seen[key] = times = seen.get(key, 0) + 1
            line = Text.assemble("  → ", (event.name, "bold"), f" {shorten(args, room - len(event.name))}")
            if outcome is not None and times > 1:
                folded.add(event.call)
                same = "the same error" if outcome.error is not None else "the same result"
                line.append(f"  {'✗' if outcome.error else '✓'} {same}, {_ordinal(times)} time", style="yellow")
            out.print(line)
        elif isinstance(event, ToolCallRetrying):
            failure = event.error
            head = f"    ↻ attempt {event.attempt} failed, retrying in {event.delay_s:g}s: "
            out.print(Text(head + shorten(failure.message, room + 8 - len(head)), style="yellow"))
        elif isinstance(event, ToolCallFinished):
            if event.call not in folded:
                _finished(out, event, room)
        elif event.kind == "tool_call_resumed":
            why = getattr(event, "why", "") or "its contract allows it"
            call = getattr(event, "call", "")
            out.print(Text(f"  ↺ call {call} runs again ({why}), with the same idempotency key", style="yellow"))
        else:
            _control(out, event, room)


def _control(out: Output, event: Event, room: int) -> None:
    """What the controls did (events the transcript of an uncontrolled run never holds)."""
    if isinstance(event, ApprovalRequested):
        args = shorten(json.dumps(event.arguments, ensure_ascii=False), room - len(event.name))
        out.print(Text.assemble("  → ", (event.name, "bold"), f" {args}"))
        out.print(Text(f"    ⏸ call {event.call} held for approval: {event.why}", style="yellow"))
    elif isinstance(event, CallApproved):
        edited = "" if event.arguments is None else f", with {json.dumps(event.arguments, ensure_ascii=False)}"
        out.print(Text(f"  ✓ call {event.call} approved by {event.by}{edited}", style="green"))
    elif isinstance(event, CallRejected):
        out.print(Text(f"  ✗ call {event.call} rejected by {event.by}: {event.reason}", style="red"))
    elif isinstance(event, Intervened):
        say(out, "keel", f"({event.rule}) {event.message}", "yellow")
    elif isinstance(event, ContextCompacted):
        out.print(
            Text(
                f"  context compacted: about {tokens(event.tokens_before)} → {tokens(event.tokens_after)} tokens "
                "(older tool results as digests; the journal keeps them whole)",
                style="dim",
            )
        )
    elif isinstance(event, NoteWritten):
        out.print(Text(f"  note {event.key}: {shorten(event.value, room)}", style="dim"))
    elif isinstance(event, RollbackStarted):
        out.print(Text(f"  ↩ rollback by {event.by}: {event.why}", style="blue"))
        out.print(Text(f"    undoes, the last first: call {', call '.join(event.calls)}", style="dim"))
    elif isinstance(event, CompensationStarted) and event.attempt > 1:
        out.print(Text(f"  ↺ call {event.call}'s undo runs again (attempt {event.attempt})", style="yellow"))
    elif isinstance(event, CompensationFinished):
        settled = f" (settled by {event.resolved_by})" if event.resolved_by else ""
        if event.error is None:
            head = f"    ↩ call {event.call} undone{settled}: "
            out.print(Text(head + shorten(event.content, room + 8 - len(head)), style="blue"))
        else:
            say(
                out, "    ✗", f"call {event.call} not undone: {event.error.kind}: {event.error.message}", "red", width=5
            )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _finished(out: Output, event: ToolCallFinished, room: int) -> None:
    if event.error is None:
        attempts = f" (attempt {event.attempts})" if event.attempts > 1 else ""
        out.print(Text(f"    ✓ {shorten(event.content, room - len(attempts))}{attempts}", style="green"))
        return
    if event.error.kind == "invalid_arguments":
        out.print(Text.assemble("  → ", (event.name, "bold"), " (rejected before it ran)"))
    say(out, "    ✗", f"{event.error.kind}: {event.error.message}", "red", width=5)


def ending(out: Output, result: RunResult) -> None:
    spent = f" · ${result.cost_usd:.4f}" if result.cost_usd else ""
    status = status_text(result.status, result.reason)
    line = Text.assemble(
        status,
        f" · {plural(result.steps, 'step')} · {plural(result.tool_calls, 'tool call')} · "
        f"{tokens(result.usage.total_tokens)} tokens{spent} · run {result.run_id}",
    )
    line.stylize("dim", len(status))
    out.print(line)


def lesson(out: Output, text: str) -> None:
    out.print(Text(text, style="italic"))
