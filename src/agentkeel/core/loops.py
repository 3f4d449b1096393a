"""Loops and spirals: a model that keeps doing the same thing and learns nothing from it.

Three rules, each counted over a bounded window, so a 10,000-step run costs no more memory than a short one:

* ``repeated_call``: the same tool, with the same arguments, gave the same outcome N times within the last 2N
  calls (two calls alternating forever trip it as surely as one call repeated).
* ``repeated_error``: the same tool failed with the same error N times within the last 3N calls, whatever the
  arguments (a model that keeps sending arguments the tool refuses for the same reason). Errors are sparser
  than calls, hence the wider window: one call of four failing the same way at every step still trips it.
* ``no_progress``: N steps in a row whose every tool result repeats one already seen in the run (the last
  ``REMEMBERED_RESULTS`` distinct results): a cycle too long for ``repeated_call``. A step without calls
  neither counts nor breaks the streak.

Arguments compare as dicts, outcomes by the exact text the model read; the counts are kept under hashes (of
this process: a resumed run's tracker is rebuilt from the journal), and the windows keep only the few dozen
latest calls, for the evidence.

When a rule trips, the model first gets ``LoopPolicy.message`` (at most ``interventions`` times per rule) and
every rule counts from zero again (so one loop earns one message, not two); the rule's
next trip ends the run ``failed(loop_detected)`` with the evidence.

The defaults (5 repeats, 3 errors, 8 stale steps, 1 message) stop ``lookup(order_id="#1")`` answering "not
found" five times, or the same validation error three times, within a couple of steps of the pattern being
plain; a poller that sees "pending" up to four times before the status moves, or pages with changing
arguments, is never disturbed. A poller whose tool says exactly the same thing five times in ten calls is told
so once: make the result change (progress, elapsed time) or raise ``repeated_call``.

Driving a tracker: observe each call as its ``ToolCallFinished`` is committed, in journal order (``observe``
for a started call, ``observe_rejected`` for one refused before it ran); before each model call,
``end_step(state.steps_completed)`` then ``verdict``; after journaling an intervention, ``reset(rule)``.
``LoopTracker.of`` rebuilds the same tracker after a resume from the conversation, which holds every result in
journal order (refused calls included); at each intervention message it resets the rule tripped there.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Mapping
from itertools import islice
from typing import Any, NamedTuple

from agentkeel.core.calls import CallRecord
from agentkeel.core.events import ToolCallFinished
from agentkeel.core.loop_policy import DEFAULT_MESSAGE, RULES, LoopPolicy, LoopVerdict
from agentkeel.core.messages import AssistantMessage, ToolResultMessage
from agentkeel.core.state import RunState

__all__ = ["DEFAULT_MESSAGE", "REMEMBERED_RESULTS", "RULES", "LoopPolicy", "LoopTracker", "LoopVerdict"]

REMEMBERED_RESULTS = 1024
"""Distinct results ``no_progress`` remembers (the least recently seen is forgotten first)."""
_PREVIEW = 80


class _Seen(NamedTuple):
    """A call as the tracker remembers it, for the evidence (shortened only when evidence is written: the windows
    hold a few dozen calls, whose texts the run's conversation holds anyway). A tuple of plain values: the
    garbage collector stops tracking it, so a thousand live runs' windows cost it nothing."""

    call: str
    name: str
    key: Any
    """The arguments' key (``_arguments_key``), or ``None`` for a call refused before it ran."""
    content: str

    @property
    def arguments(self) -> str:
        key = self.key
        if key is None:
            return "..."
        shown = key if isinstance(key, str) else json.dumps(dict(key), sort_keys=True, ensure_ascii=False, default=repr)
        return _shorten(shown)

    @property
    def result(self) -> str:
        return _shorten(self.content)


_Window = deque[tuple[int | None, _Seen]]


class LoopTracker:
    """Watches a run's calls, step by step, in constant memory; see the module's docstring for how to drive it."""

    def __init__(self, policy: LoopPolicy) -> None:
        self.policy = policy
        self._calls: _Window = deque(maxlen=2 * (policy.repeated_call or 0))
        self._call_counts: dict[int, int] = {}
        self._errors: _Window = deque(maxlen=3 * (policy.repeated_error or 0))
        self._error_counts: dict[int, int] = {}
        self._seen: dict[int, None] = {}
        """Digests of the results seen, least recently seen first."""
        self._may_repeat = False
        self._may_fail = False
        """Whether a count reached its rule's limit since a verdict last looked (a verdict is O(1) otherwise)."""
        self._step: list[_Seen] = []
        self._fresh = False
        """Whether the current step brought a result not seen before."""
        self._stale: deque[_Seen] = deque(maxlen=2 * (policy.no_progress or 0))
        """The last calls of the steps that brought nothing new (for the evidence)."""
        self._stale_steps = 0
        self._stale_calls = 0
        self._stale_from = 0
        self._ended = 0

    @classmethod
    def of(cls, state: RunState, policy: LoopPolicy) -> LoopTracker:
        """The tracker a live run would have built, from the state a resume replays."""
        tracker = cls(policy)
        step = 0
        positions: dict[str, list[int]] = {}
        for message in islice(state.messages, 1, None):  # the first message is the task
            if isinstance(message, AssistantMessage):
                tracker.end_step(step)
                step += 1
                positions = {}
                for index in reversed(range(len(message.tool_calls))):
                    positions.setdefault(message.tool_calls[index].id, []).append(index)
            elif isinstance(message, ToolResultMessage):
                indices = positions.get(message.call_id)
                if not indices:
                    continue
                call = f"{step}.{indices.pop() + 1}"
                record = state.calls.get(call)
                if record is not None and record.finished is not None:
                    tracker.observe(record)
                else:
                    tracker._add(call, message.name, None, message.content, message.is_error)
            else:  # the engine spoke to the model: the rule it spoke about counts again from there
                tracker.end_step(step)
                tripped = tracker._tripped()
                if tripped is not None:
                    tracker.reset(tripped[0])
        return tracker

    def observe(self, record: CallRecord) -> None:
        """A started call that finished."""
        finished = record.finished
        if finished is None:
            raise ValueError(f"call {record.call} has not finished: observe it once its outcome is journaled")
        self._add(record.call, record.name, record.arguments, finished.content, finished.error is not None)

    def observe_rejected(self, finished: ToolCallFinished) -> None:
        """A call refused before it ran (unknown tool, invalid arguments, denied): its arguments are unknown."""
        self._add(finished.call, finished.name, None, finished.content, finished.error is not None)

    def end_step(self, step: int) -> None:
        """Every call of ``step`` has been observed. Calling it again for the same step does nothing."""
        if step <= self._ended:
            return
        self._ended = step
        if self._step:
            if self._fresh:
                self._stale_steps = self._stale_calls = 0
                self._stale.clear()
            else:
                if not self._stale_steps:
                    self._stale_from = step
                self._stale_steps += 1
                self._stale_calls += len(self._step)
                self._stale.extend(self._step)
        self._step = []
        self._fresh = False

    def verdict(self, interventions: Mapping[str, int]) -> LoopVerdict | None:
        """The first rule that trips, if any; ``interventions``: the messages given per rule so far."""
        tripped = self._tripped()
        if tripped is None:
            return None
        rule, summary, evidence = tripped
        given = interventions.get(rule, 0)
        if given >= self.policy.interventions:
            told = f"; the model had been told {given} time(s) before" if given else ""
            return LoopVerdict(rule=rule, evidence=evidence + told, message="", fail=True)
        message = self.policy.message.format(rule=rule, summary=summary, evidence=evidence)
        return LoopVerdict(rule=rule, evidence=evidence, message=message, fail=False)

    def reset(self, rule: str) -> None:
        """The model was told about ``rule``: every rule counts from zero (the message is news to the model, and
        one loop should not earn two messages: a call repeated with the same error trips two rules at once). Other
        names (budgets, ...) change nothing."""
        if rule not in RULES:
            return
        self._calls.clear()
        self._call_counts.clear()
        self._errors.clear()
        self._error_counts.clear()
        self._stale_steps = self._stale_calls = 0
        self._stale.clear()

    def _add(self, call: str, name: str, arguments: Any, content: str, failed: bool) -> None:
        outcome = hash((name, content))
        arguments_key = _arguments_key(arguments)
        key = hash((outcome, arguments_key))
        seen = _Seen(call, name, arguments_key, content)
        policy = self.policy
        if (
            policy.repeated_call is not None
            and _push(self._calls, self._call_counts, key, seen) >= policy.repeated_call
        ):
            self._may_repeat = True
        if policy.repeated_error is not None:
            count = _push(self._errors, self._error_counts, outcome if failed else None, seen)
            if count >= policy.repeated_error:
                self._may_fail = True
        if key in self._seen:
            del self._seen[key]  # re-inserted last: the least recently seen result is the one forgotten
        else:
            self._fresh = True
            if len(self._seen) >= REMEMBERED_RESULTS:
                del self._seen[next(iter(self._seen))]
        self._seen[key] = None
        self._step.append(seen)

    def _tripped(self) -> tuple[str, str, str] | None:
        """``(rule, summary for the model, evidence for the operator)`` of the first rule that trips."""
        policy = self.policy
        if self._may_fail and policy.repeated_error is not None:  # a count reached the limit since the last look
            key = _over(self._error_counts, policy.repeated_error)
            self._may_fail = key is not None
        else:
            key = None
        if key is not None:
            calls = [seen for k, seen in self._errors if k == key]
            last, n = calls[-1], len(calls)
            return (
                "repeated_error",
                f"{last.name} has failed {n} times with the same error: {last.result}",
                f"{last.name} failed {n} times in the last {len(self._errors)} calls with the same error "
                f"(calls {_ids(calls)}): {last.result}",
            )
        if self._may_repeat and policy.repeated_call is not None:
            key = _over(self._call_counts, policy.repeated_call)
            self._may_repeat = key is not None
        if key is not None:
            calls = [seen for k, seen in self._calls if k == key]
            last, n = calls[-1], len(calls)
            return (
                "repeated_call",
                f"You have called {last.name} with the same arguments {n} times and got the same result each time.",
                f"{last.name}({last.arguments}) returned the same result {n} times in the last {len(self._calls)} "
                f"calls (calls {_ids(calls)}): {last.result}",
            )
        if policy.no_progress is not None and self._stale_steps >= policy.no_progress:
            n, calls = self._stale_steps, list(self._stale)
            names = ", ".join(dict.fromkeys(seen.name for seen in calls))
            more = "..., " if self._stale_calls > len(calls) else ""
            return (
                "no_progress",
                f"Your last {n} steps brought nothing new: every tool result repeated one you had already seen.",
                f"steps {self._stale_from} to {self._ended} ({n} steps, {self._stale_calls} calls) returned only "
                f"results seen before (calls {more}{_ids(calls)}; tools {names})",
            )
        return None


def _push(window: _Window, counts: dict[int, int], key: int | None, seen: _Seen) -> int:
    """Slide ``window`` by one call, keeping ``counts`` the number of times each key is in it; returns the count
    of ``key`` (0 for ``None``)."""
    if len(window) == window.maxlen:
        old = window[0][0]
        if old is not None:
            counts[old] -= 1
            if not counts[old]:
                del counts[old]
    window.append((key, seen))
    if key is None:
        return 0
    count = counts[key] = counts.get(key, 0) + 1
    return count


def _over(counts: dict[int, int], limit: int) -> int | None:
    """The most frequent key, if it reaches ``limit`` (a window holds at most a few dozen keys)."""
    key = max(counts, key=counts.__getitem__, default=None)
    return key if key is not None and counts[key] >= limit else None


def _arguments_key(arguments: Any) -> Any:
    """Equal arguments give equal keys: flat ones as their items (a tool's validated arguments come in its
    parameters' order), nested ones as canonical JSON. Keys are hashed, and hashes live only in this process: a
    tracker is rebuilt from the journal after a resume."""
    if arguments is None:
        return None
    items = tuple(arguments.items())
    try:
        hash(items)
    except TypeError:
        return json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=repr)
    return items


def _shorten(text: str) -> str:
    short = " ".join(text[: 2 * _PREVIEW].split())
    return short if len(short) <= _PREVIEW and len(text) <= 2 * _PREVIEW else short[: _PREVIEW - 3] + "..."


def _ids(calls: list[_Seen]) -> str:
    return ", ".join(seen.call for seen in calls)
