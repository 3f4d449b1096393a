"""``keel show``: a run's journal as a tree, one branch per step.

Built from the events themselves, not from the folded state: every attempt, retry, pause, resume and person's
decision that the journal holds appears, each at the step it belongs to, with its time since the run started.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any

from rich.text import Text
from rich.tree import Tree

from agentkeel.cli.render import cost, duration, plural, shorten, status_text, tokens
from agentkeel.core.events import (
    ApprovalRequested,
    CallApproved,
    CallPreviewed,
    CallRejected,
    CallRetryAuthorized,
    CompensationFinished,
    CompensationStarted,
    ContextCompacted,
    Event,
    Intervened,
    ModelResponded,
    ModelRetrying,
    NoteWritten,
    RollbackStarted,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    StepFinished,
    ToolCallFinished,
    ToolCallResumed,
    ToolCallRetrying,
    ToolCallStarted,
    ToolFailure,
)
from agentkeel.core.state import replay
from agentkeel.stores.encoding import journal_bytes

TEXT_LIMIT = 240
"""How much of what the model said, and of arguments and results, a line shows."""


def events_json(events: Sequence[Event]) -> list[Any]:
    """The journal as JSON values, one per event, in order (``keel show --json``)."""
    return [json.loads(journal_bytes(event)) for event in events]


def run_tree(events: Sequence[Event]) -> Tree:
    first = events[0]
    assert isinstance(first, RunStarted)
    return _TreeBuilder(first).build(events)


class _TreeBuilder:
    def __init__(self, first: RunStarted) -> None:
        self.first = first
        self.steps: dict[int, Tree] = {}
        self.calls: dict[str, Tree] = {}
        self.interrupted: set[str] = set()
        self.open: set[str] = set()

    def build(self, events: Sequence[Event]) -> Tree:
        state = replay(list(events))
        first = self.first
        head = Text.assemble(
            ("run ", "bold"),
            (first.run_id, "bold"),
            f"  {first.agent}  ",
            status_text(state.status, state.reason),
            f"  {plural(state.steps_completed, 'step')} · {tokens(state.usage.total_tokens)} tokens · "
            f"{cost(state.cost_usd)}",
        )
        self.root = Tree(head)
        self.root.add(Text.assemble(("task: ", "bold"), shorten(first.task, TEXT_LIMIT * 2)))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first.at))
        where = f" · agent {first.agent_ref}" if first.agent_ref else ""
        self.root.add(
            Text(f"started {started} · model {first.model} · max_steps {first.max_steps}{where}", style="dim")
        )
        if first.mode == "dry_run":
            self.root.add(Text("dry run: write tools only preview; the plan is `keel plan " + first.run_id + "`"))
        elif first.mode == "apply":
            calls = ", ".join(p.name for p in first.plan)
            self.root.add(
                Text(f"applies the plan of {first.plan_of}, approved by {first.approved_by}: {calls}", style="blue")
            )
        for event in events[1:]:
            self._add(event)
        why = "still running, or its process died" if state.status == "running" else "the call was interrupted"
        for call in sorted(self.open):
            self.calls[call].add(Text(f"no outcome journaled: {why}", style="bold yellow"))
        return self.root

    def _since(self, at: float) -> str:
        return f"+{at - self.first.at:.2f}s"

    def _step_of(self, call: str) -> Tree:
        step, _, _ = call.partition(".")
        return self.steps.get(int(step), self.root) if step.isdigit() else self.root

    def _add(self, event: Event) -> None:
        if isinstance(event, ModelResponded):
            self._model(event)
        elif isinstance(event, ToolCallStarted):
            node = self.calls.get(event.call)
            if node is None:
                args = shorten(json.dumps(event.arguments, ensure_ascii=False), TEXT_LIMIT)
                label = Text.assemble((f"{event.call} ", "dim"), (event.name, "bold cyan"), f" {args}")
                self.calls[event.call] = self._step_of(event.call).add(label)
            else:  # an approved call starts
                node.add(Text(f"starts · {self._since(event.at)}", style="dim"))
            self.open.add(event.call)
        elif isinstance(event, ApprovalRequested):
            args = shorten(json.dumps(event.arguments, ensure_ascii=False), TEXT_LIMIT)
            label = Text.assemble((f"{event.call} ", "dim"), (event.name, "bold cyan"), f" {args}")
            node = self.calls[event.call] = self._step_of(event.call).add(label)
            node.add(Text(f"⏸ held for approval: {event.why}", style="yellow"))
        elif isinstance(event, CallApproved):
            edited = "" if event.arguments is None else f", with {json.dumps(event.arguments, ensure_ascii=False)}"
            line = f"✓ approved by {event.by}{edited} · {self._since(event.at)}"
            (self.calls.get(event.call) or self.root).add(Text(line, style="green"))
        elif isinstance(event, CallRejected):
            line = f"✗ rejected by {event.by}: {event.reason} · {self._since(event.at)}"
            (self.calls.get(event.call) or self.root).add(Text(line, style="red"))
        elif isinstance(event, Intervened):
            node = self.root.add(
                Text.assemble(("engine → model ", "bold yellow"), f"({event.rule}) {self._since(event.at)}")
            )
            node.add(Text(shorten(event.message, TEXT_LIMIT), style="yellow"))
            if event.evidence:
                node.add(Text(f"evidence: {shorten(event.evidence, TEXT_LIMIT)}", style="dim"))
        elif isinstance(event, StepFinished):
            shown = shorten(json.dumps(event.result, ensure_ascii=False), TEXT_LIMIT)
            done = Text.assemble(("step ", "bold"), (event.key, "bold cyan"), f" → {shown}")
            extra = f" · {event.model_calls} model call(s)" if event.model_calls else ""
            done.append(f"{extra} · {duration(event.latency_s)} · {self._since(event.at)}", style="dim")
            self.root.add(done)
        elif isinstance(event, CallPreviewed):
            args = shorten(json.dumps(event.arguments, ensure_ascii=False), TEXT_LIMIT)
            label = Text.assemble((f"{event.call} ", "dim"), (event.name, "bold cyan"), f" {args}")
            node = self.calls[event.call] = self._step_of(event.call).add(label)
            if event.has_preview:
                shown = shorten(json.dumps(event.preview, ensure_ascii=False), TEXT_LIMIT)
                node.add(Text(f"◇ dry run, not made; would: {shown}", style="blue"))
            else:
                node.add(Text("◇ dry run, not made (no preview)", style="yellow"))
        elif isinstance(event, RollbackStarted):
            node = self.root.add(
                Text.assemble(("rollback", "bold blue"), f" by {event.by}: {event.why} {self._since(event.at)}")
            )
            node.add(Text(f"undoes, in this order: {', '.join(event.calls)}", style="dim"))
        elif isinstance(event, CompensationStarted):
            if event.attempt > 1:
                again = f"↺ undo runs again as attempt {event.attempt} (it was interrupted)"
                (self.calls.get(event.call) or self.root).add(Text(again, style="yellow"))
        elif isinstance(event, CompensationFinished):
            node = self.calls.get(event.call) or self.root
            if event.error is None:
                undone = Text.assemble(("↩ undone", "blue"), f": {shorten(event.content, TEXT_LIMIT)}")
            else:
                undone = Text.assemble(("↩ not undone ", "red"), _failure(event.error))
            if event.resolved_by:
                undone.append(f" · settled by {event.resolved_by}", style="yellow")
            undone.append(f" · {self._since(event.at)}", style="dim")
            node.add(undone)
        elif isinstance(event, ContextCompacted):
            self.root.add(
                Text(
                    f"context compacted: messages before #{event.upto} as digests · about "
                    f"{tokens(event.tokens_before)} → {tokens(event.tokens_after)} tokens · {self._since(event.at)}",
                    style="dim",
                )
            )
        elif isinstance(event, ToolCallRetrying):
            node = self.calls.get(event.call) or self._step_of(event.call)
            node.add(
                Text.assemble(
                    (f"attempt {event.attempt} failed ", "yellow"),
                    _failure(event.error),
                    f" · retrying in {event.delay_s:g}s · {self._since(event.at)}",
                )
            )
        elif isinstance(event, ToolCallFinished):
            self._finished(event)
        elif isinstance(event, ModelRetrying):
            self.root.add(
                Text.assemble(
                    (f"step {event.step}: model attempt {event.attempt} failed ", "yellow"),
                    (f"{event.error_kind}: ", "red"),
                    shorten(event.message, TEXT_LIMIT),
                    f" · retrying in {event.delay_s:g}s · {self._since(event.at)}",
                )
            )
        elif isinstance(event, ToolCallResumed):
            node = self.calls.get(event.call) or self._step_of(event.call)
            why = {
                "read": "a read tool",
                "idempotent": "idempotent, same key",
                "authorized": "a person said retry",
                "reconciled": "its reconcile hook found it had not happened",
            }.get(event.why, event.why)
            node.add(Text(f"↺ interrupted: runs again as attempt {event.attempt} ({why})", style="yellow"))
        elif isinstance(event, CallRetryAuthorized):
            node = self.calls.get(event.call) or self.root
            node.add(Text(f"{event.by} allowed it to run again (keel resolve --retry)", style="yellow"))
        elif isinstance(event, NoteWritten):
            self.root.add(Text(f"note {event.key} = {shorten(event.value, TEXT_LIMIT)}", style="dim"))
        elif isinstance(event, RunPaused):
            node = self.root.add(Text.assemble(("paused", "bold yellow"), f"({event.reason}) {self._since(event.at)}"))
            if event.detail:
                node.add(Text(event.detail, style="yellow"))
        elif isinstance(event, RunResumed):
            self._resumed(event)
        elif isinstance(event, RunEnded):
            self._ended(event)
        else:
            self._other(event)

    def _other(self, event: Event) -> None:
        """An event without a drawing of its own: its kind and fields, under its call if it has one."""
        fields = {k: v for k, v in _fields(event).items() if k not in ("kind", "at", "call")}
        described = " · ".join(f"{k} {shorten(str(v), TEXT_LIMIT)}" for k, v in fields.items())
        label = Text.assemble((event.kind.replace("_", " "), "cyan"), f" · {described}" if described else "")
        label.append(f" · {self._since(event.at)}", style="dim")
        call = getattr(event, "call", None)
        (self.calls.get(call, self.root) if isinstance(call, str) else self.root).add(label)

    def _model(self, event: ModelResponded) -> None:
        usage = event.response.usage
        label = Text.assemble(
            (f"step {event.step}", "bold"),
            f"  {self._since(event.at)} · model {duration(event.latency_s)} · "
            f"{tokens(usage.input_tokens)} in / {tokens(usage.output_tokens)} out tokens",
        )
        if event.cost_usd:
            label.append(f" · {cost(event.cost_usd)}")
        if event.response.stop_reason not in ("end_turn", "tool_use"):
            label.append(f" · stopped: {event.response.stop_reason}", style="yellow")
        node = self.root.add(label)
        if event.response.text:
            node.add(Text(f"“{shorten(event.response.text, TEXT_LIMIT)}”", style="italic"))
        self.steps[event.step] = node

    def _finished(self, event: ToolCallFinished) -> None:
        node = self.calls.get(event.call)
        if node is None:  # rejected before it could start: unknown tool, invalid arguments
            label = Text.assemble((f"{event.call} ", "dim"), (event.name, "bold cyan"), (" (not run)", "dim"))
            node = self.calls[event.call] = self._step_of(event.call).add(label)
        self.open.discard(event.call)
        if event.error is not None:
            line = Text.assemble(("✗ ", "red"), _failure(event.error))
        else:
            result = event.content if isinstance(event.result, str) else json.dumps(event.result, ensure_ascii=False)
            line = Text.assemble(("→ ", "green"), shorten(result, TEXT_LIMIT))
        extras = []
        if event.attempts:
            extras.append(f"{event.attempts} attempt{'s' if event.attempts != 1 else ''}")
        if event.latency_s:
            extras.append(duration(event.latency_s))
        extras.append(self._since(event.at))
        line.append(" · " + " · ".join(extras), style="dim")
        if event.resolved_by and not (event.error is not None and event.error.kind == "rejected"):
            line.append(f" · resolved by {event.resolved_by} (keel resolve)", style="yellow")
        elif event.call in self.interrupted:
            line.append(" · after a resume", style="yellow")
        node.add(line)

    def _resumed(self, event: RunResumed) -> None:
        node = self.root.add(Text.assemble(("resumed", "bold cyan"), f" by {event.owner} {self._since(event.at)}"))
        if self.open:
            listed = ", ".join(sorted(self.open))
            node.add(Text(f"interrupted call(s) {listed} started before and had no outcome", style="yellow"))
            self.interrupted |= self.open

    def _ended(self, event: RunEnded) -> None:
        label = Text.assemble(("ended ", "bold"), status_text(event.status, event.reason), f" {self._since(event.at)}")
        node = self.root.add(label)
        if event.error:
            node.add(Text(event.error, style="red" if event.status == "failed" else ""))
        if event.by:
            node.add(Text(f"by {event.by}", style="dim"))
        if event.output:
            node.add(Text(shorten(event.output, TEXT_LIMIT * 2)))


def _fields(event: Event) -> dict[str, Any]:
    return {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}


def _failure(failure: ToolFailure) -> Text:
    kind = failure.kind if not failure.exception_type else f"{failure.kind} {failure.exception_type}"
    return Text.assemble((kind, "red"), f": {shorten(failure.message, TEXT_LIMIT)}")
