"""From a run's journal to its spans: the trace of a run is derived from its events, never recorded apart.

A ``SpanBuilder`` takes a run's events one at a time and hands back the spans each one finishes. The same builder
serves three readers: a live driver feeds it each event as it is committed; a process that resumes a run after a
crash feeds it the stored journal first (and drops what that gives: the dead process emitted it), so the spans
that were open at the crash (the run, the step, the call in flight) end with their original start times; and
``keel export`` feeds it a whole journal after the fact (``journal_spans``). Span and trace ids derive from the run
id (``ids.py``), so the three agree, and a run that crashed and resumed reads as one trace.

The spans follow the OpenTelemetry GenAI semantic conventions (span names, kinds, ``gen_ai.*`` attributes) and
carry OpenInference's ``openinference.span.kind`` and ``llm.*`` figures so that either kind of backend reads them:

* the run: ``invoke_agent <agent>`` (a pipeline: ``invoke_workflow <pipeline>``), from ``run_started`` to
  ``run_ended``; it nests under ``RunStarted.trace_parent`` when there is one (a subagent under its supervisor's
  delegation);
* each step: ``step <n>`` (a pipeline's: ``step <key>``), from its model call's start to its last call's end;
* each model call: ``chat <model>`` (a client span), its failed attempts as ``model_retrying`` events;
* each tool call: ``execute_tool <tool>``, retries and resumes as events; approvals: ``await_approval <tool>``;
  a rollback: ``rollback <agent>`` with one ``compensate <tool>`` per undone call.

Content (the task, prompts, answers, tool arguments and results) is recorded only with ``capture_content``; without
it no text the model read or wrote appears in any span, only names, ids, figures and error kinds.

The builder is fed on every commit of every traced run, so it keeps per-event work small: no journal rescans, no
copies, each attribute dictionary built once and handed to the span record as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
from agentkeel.core.messages import ModelResponse
from agentkeel.observe.ids import parent_span_of, span_id, trace_id_of

__all__ = ["AttributeValue", "SpanBuilder", "SpanEvent", "SpanKind", "SpanRecord", "journal_spans"]

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[int] | Sequence[float] | Sequence[bool]
SpanKind = Literal["internal", "client", "producer", "consumer"]
"""A run's spans are ``internal`` or ``client`` (model calls); the bus's messages are ``producer`` and ``consumer``."""

MAX_EVENTS = 128
"""Events kept per span (the SDK's default limit): a run that pauses or is told off a thousand times keeps a
bounded span."""

_FINISH_REASONS = {
    "end_turn": "stop",
    "tool_use": "tool_call",
    "max_tokens": "length",
    "stop_sequence": "stop",
    "content_filter": "content_filter",
    "other": "other",
}
"""``StopReason`` as the conventions' ``finish_reason`` values."""

_JSON = "application/json"


@dataclass(frozen=True, slots=True)
class SpanEvent:
    """Something that happened during a span (a retry, a resume, a pause), at ``time_ns``."""

    name: str
    time_ns: int
    attributes: Mapping[str, AttributeValue]


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """A finished span, independent of any OpenTelemetry implementation (``export.py`` and ``live.py`` turn it
    into the SDK's)."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    kind: SpanKind
    start_ns: int
    end_ns: int
    attributes: Mapping[str, AttributeValue]
    error: str | None
    """The status description when the span failed; None: it did not."""
    events: tuple[SpanEvent, ...] = ()


class _Open:
    """A span that has started and not ended. Its attribute dict becomes the record's (never copied)."""

    __slots__ = ("attributes", "events", "kind", "name", "parent_id", "span_id", "start_ns")

    def __init__(
        self,
        span: int,
        parent: int | None,
        name: str,
        kind: SpanKind,
        start_ns: int,
        attributes: dict[str, AttributeValue],
    ) -> None:
        self.span_id = span
        self.parent_id = parent
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.attributes = attributes
        self.events: list[SpanEvent] = []

    def add(self, name: str, time_ns: int, attributes: Mapping[str, AttributeValue]) -> None:
        if len(self.events) < MAX_EVENTS:
            self.events.append(SpanEvent(name, time_ns, attributes))


class _Step:
    """An agent's step: its span, and how many of the calls its response asked for have an outcome."""

    __slots__ = ("done", "expected", "span")

    def __init__(self, span: _Open) -> None:
        self.span = span
        self.expected = 0
        self.done = 0


class _Retries:
    """A model call's failed attempts, journaled before its response (or before the run's end, if none came)."""

    __slots__ = ("before_ns", "events", "first_ns", "last_kind")

    def __init__(self, before_ns: int, first_ns: int) -> None:
        self.before_ns = before_ns
        """When the event before the first failed attempt was journaled: about when the call began."""
        self.first_ns = first_ns
        self.events: list[SpanEvent] = []
        self.last_kind = ""


def _ns(seconds: float) -> int:
    return int(seconds * 1_000_000_000)


def _step_of(call: str) -> int | None:
    """The step a call id (``"<step>.<index>"``) belongs to."""
    head = call.partition(".")[0]
    return int(head) if head.isdigit() else None


def _provider_and_model(model: str) -> tuple[str, str]:
    """``openai:gpt-4.1`` → ``("openai", "gpt-4.1")``; a model named without a provider is its own provider."""
    provider, _, name = model.partition(":")
    return (provider, name) if name else (model, model)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


class SpanBuilder:
    """A run's spans, built as its events come.

    ``feed(event)`` returns the spans that event finishes, children before parents, each exactly once over the
    builder's life. ``close()`` ends the spans still open at the last event's time (a run exported while it is still
    running or paused); after it the builder takes no more events. See the module's docstring.
    """

    def __init__(self, *, capture_content: bool = False) -> None:
        self._content = capture_content
        self._started = False
        self._closed = False
        self._run_id = ""
        self._agent = ""
        self._trace = 0
        self._run_span = 0
        self._run: _Open | None = None
        """The run's span, until the run ends (a rollback after the end has a span of its own)."""
        self._pipeline = False
        self._status = "running"
        self._reason = ""
        self._rolling_back = False
        self._last_ns = 0
        self._steps: dict[int, _Step] = {}
        self._retrying: dict[int, _Retries] = {}
        self._tools: dict[str, _Open] = {}
        self._approvals: dict[str, _Open] = {}
        self._undos: dict[str, _Open] = {}
        self._undo_spans: dict[str, int] = {}
        """How many compensation spans each call has had (a retried compensation gets a span of its own)."""
        self._names: dict[str, str] = {}
        """Each call's tool, for the compensations that undo it."""
        self._rollback: _Open | None = None
        self._rollbacks = 0
        self._chat_name = ""
        self._model_base: dict[str, AttributeValue] = {}
        self._base: dict[str, AttributeValue] = {}
        self._tool_base: dict[str, AttributeValue] = {}
        self._input_tokens = self._output_tokens = self._cache_read = self._cache_write = 0
        self._cost = 0.0
        self._steps_done = self._model_calls = self._tool_calls = self._tool_errors = 0
        self._messages: list[str] = []
        """With content: the conversation so far, each message already as the conventions' JSON."""
        self._instructions = ""

    # -- the interface --------------------------------------------------------------------------------------

    def feed(self, event: Event) -> list[SpanRecord]:
        """The spans ``event`` finishes (children before parents); often none."""
        if self._closed or (not self._started and event.kind != "run_started"):
            return []
        handler = _HANDLERS.get(event.kind)
        done = handler(self, event) if handler is not None else []
        self._last_ns = _ns(event.at)
        return done

    def close(self) -> list[SpanRecord]:
        """End every open span at the last event's time, the run's with the status it has now (``running``,
        ``paused``, ...) and ``agentkeel.unfinished``; nothing is marked failed for not having finished."""
        if self._closed or not self._started:
            self._closed = True
            return []
        self._closed = True
        out: list[SpanRecord] = []
        end = self._last_ns
        self._close_work(end, out, interrupted=False)
        self._close_rollback(end, out, unfinished=True)
        run = self._run
        if run is not None:
            self._run = None
            attributes = run.attributes
            self._run_figures(attributes, self._status, self._reason)
            attributes["agentkeel.unfinished"] = True
            out.append(self._record(run, end))
        return out

    # -- the run --------------------------------------------------------------------------------------------

    def _run_started(self, e: RunStarted) -> list[SpanRecord]:
        if self._started:
            return []
        self._started = True
        run_id = self._run_id = e.run_id
        self._agent = e.agent
        self._trace = trace_id_of(run_id, e.trace_parent)
        self._run_span = span_id(run_id, "run")
        self._pipeline = e.mode == "pipeline"
        provider, model = _provider_and_model(e.model)
        self._chat_name = f"chat {model}"
        self._base = {"agentkeel.run.id": run_id}
        self._model_base = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.conversation.id": run_id,
            "openinference.span.kind": "LLM",
            "llm.system": provider,
            "llm.provider": provider,
            "llm.model_name": model,
            "agentkeel.run.id": run_id,
        }
        self._tool_base = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.type": "function",
            "gen_ai.conversation.id": run_id,
            "openinference.span.kind": "TOOL",
            "agentkeel.run.id": run_id,
        }
        attributes: dict[str, AttributeValue]
        if self._pipeline:
            name = f"invoke_workflow {e.agent}"
            attributes = {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": e.agent,
                "openinference.span.kind": "CHAIN",
            }
        else:
            name = f"invoke_agent {e.agent}"
            attributes = {"gen_ai.operation.name": "invoke_agent", "openinference.span.kind": "AGENT"}
        attributes.update(
            {
                "gen_ai.agent.name": e.agent,
                "gen_ai.conversation.id": run_id,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "agentkeel.run.id": run_id,
                "agentkeel.run.mode": e.mode,
            }
        )
        if e.parent_id is not None:
            attributes["agentkeel.run.parent_id"] = e.parent_id
        if e.plan_of is not None:
            attributes["agentkeel.run.plan_of"] = e.plan_of
        if self._content:
            attributes["input.value"] = e.task
            self._instructions = e.instructions
            self._messages.append(_dumps({"role": "user", "parts": [{"type": "text", "content": e.task}]}))
        self._run = _Open(self._run_span, parent_span_of(e.trace_parent), name, "internal", _ns(e.at), attributes)
        return []

    def _run_paused(self, e: RunPaused) -> list[SpanRecord]:
        self._status, self._reason = "paused", e.reason
        where = self._run or self._rollback
        if where is not None:
            where.add("run_paused", _ns(e.at), {"agentkeel.pause.reason": e.reason, "agentkeel.calls": e.calls})
        return []

    def _run_resumed(self, e: RunResumed) -> list[SpanRecord]:
        self._status = "rolling_back" if self._rolling_back else "running"
        self._reason = "rollback" if self._rolling_back else ""
        where = self._run or self._rollback
        if where is not None:
            where.add("run_resumed", _ns(e.at), {"agentkeel.owner": e.owner})
        return []

    def _run_ended(self, e: RunEnded) -> list[SpanRecord]:
        self._status, self._reason = e.status, e.reason
        out: list[SpanRecord] = []
        end = _ns(e.at)
        self._close_work(end, out, interrupted=True)
        self._rolling_back = False
        rollback = self._rollback
        if rollback is not None:
            rollback.attributes["agentkeel.run.status"] = e.status
            self._close_rollback(end, out, unfinished=False)
        run = self._run
        if run is None:  # the end of a rollback after the run's own end: its span was emitted then
            return out
        self._run = None
        attributes = run.attributes
        self._run_figures(attributes, e.status, e.reason)
        if e.by:
            attributes["agentkeel.run.ended_by"] = e.by
        if self._content and e.output:
            attributes["output.value"] = e.output
        error = None
        if e.status in ("failed", "cancelled"):
            attributes["error.type"] = e.reason or e.status
            error = e.error or e.reason or e.status
        out.append(self._record(run, end, error))
        return out

    def _run_figures(self, attributes: dict[str, AttributeValue], status: str, reason: str) -> None:
        attributes["gen_ai.usage.input_tokens"] = self._input_tokens
        attributes["gen_ai.usage.output_tokens"] = self._output_tokens
        if self._cache_read:
            attributes["gen_ai.usage.cache_read.input_tokens"] = self._cache_read
        if self._cache_write:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = self._cache_write
        attributes["agentkeel.run.status"] = status
        attributes["agentkeel.run.reason"] = reason
        attributes["agentkeel.run.cost_usd"] = self._cost
        attributes["agentkeel.run.steps"] = self._steps_done
        attributes["agentkeel.run.model_calls"] = self._model_calls
        attributes["agentkeel.run.tool_calls"] = self._tool_calls
        attributes["agentkeel.run.tool_errors"] = self._tool_errors

    def _on_run(self, name: str, at: float, attributes: Mapping[str, AttributeValue]) -> list[SpanRecord]:
        if self._run is not None:
            self._run.add(name, _ns(at), attributes)
        return []

    def _intervened(self, e: Intervened) -> list[SpanRecord]:
        if self._content:
            self._messages.append(_dumps({"role": "user", "parts": [{"type": "text", "content": e.message}]}))
        return self._on_run("intervened", e.at, {"agentkeel.rule": e.rule, "agentkeel.final": e.final})

    def _context_compacted(self, e: ContextCompacted) -> list[SpanRecord]:
        figures = {"agentkeel.upto": e.upto, "agentkeel.tokens_before": e.tokens_before}
        return self._on_run("context_compacted", e.at, {**figures, "agentkeel.tokens_after": e.tokens_after})

    def _note_written(self, e: NoteWritten) -> list[SpanRecord]:
        shown: dict[str, AttributeValue] = {"agentkeel.note.key": e.key}
        if self._content:
            shown["agentkeel.note.value"] = e.value
        return self._on_run("note_written", e.at, shown)

    # -- steps and model calls ------------------------------------------------------------------------------

    def _open_step(self, step: int, start_ns: int) -> _Step:
        found = self._steps.get(step)
        if found is None:
            attributes: dict[str, AttributeValue] = {
                "openinference.span.kind": "CHAIN",
                "agentkeel.step": step,
                "agentkeel.run.id": self._run_id,
            }
            span = _Open(
                span_id(self._run_id, f"step/{step}"), self._run_span, f"step {step}", "internal", start_ns, attributes
            )
            found = self._steps[step] = _Step(span)
        return found

    def _end_step(self, step: int, end_ns: int) -> SpanRecord:
        return self._record(self._steps.pop(step).span, end_ns)

    def _close_steps_before(self, step: int, end_ns: int, out: list[SpanRecord]) -> None:
        """A later step began: an earlier one still open (a call that never got an outcome) ends here."""
        for number in [n for n in self._steps if n < step]:
            out.append(self._end_step(number, end_ns))

    def _model_retrying(self, e: ModelRetrying) -> list[SpanRecord]:
        at = _ns(e.at)
        retries = self._retrying.get(e.step)
        if retries is None:
            retries = self._retrying[e.step] = _Retries(self._last_ns, at)
        retries.last_kind = e.error_kind
        if len(retries.events) < MAX_EVENTS:
            retries.events.append(
                SpanEvent(
                    "model_retrying",
                    at,
                    {
                        "error.type": e.error_kind,
                        "error.message": e.message,
                        "agentkeel.attempt": e.attempt,
                        "agentkeel.retry.delay_s": e.delay_s,
                    },
                )
            )
        out: list[SpanRecord] = []
        self._close_steps_before(e.step, at, out)
        return out

    def _model_responded(self, e: ModelResponded) -> list[SpanRecord]:
        out: list[SpanRecord] = []
        end = _ns(e.at)
        start = min(_ns(e.at - e.latency_s), end)
        retries = self._retrying.pop(e.step, None)
        if retries is not None:
            start = min(start, retries.first_ns)
        self._close_steps_before(e.step, start, out)
        step = self._open_step(e.step, start)
        response = e.response
        usage = response.usage
        attributes = {
            **self._model_base,
            "gen_ai.response.finish_reasons": (_FINISH_REASONS.get(response.stop_reason, response.stop_reason),),
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "llm.token_count.prompt": usage.input_tokens,
            "llm.token_count.completion": usage.output_tokens,
            "llm.token_count.total": usage.input_tokens + usage.output_tokens,
            "agentkeel.cost_usd": e.cost_usd,
            "agentkeel.step": e.step,
        }
        if response.model:
            attributes["gen_ai.response.model"] = response.model
        if usage.cache_read_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
            attributes["llm.token_count.prompt_details.cache_read"] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
            attributes["llm.token_count.prompt_details.cache_write"] = usage.cache_write_tokens
        if self._content:
            self._model_content(attributes, response)
        model = _Open(
            span_id(self._run_id, f"model/{e.step}"), step.span.span_id, self._chat_name, "client", start, attributes
        )
        if retries is not None:
            model.events = retries.events
        out.append(self._record(model, end))
        self._input_tokens += usage.input_tokens
        self._output_tokens += usage.output_tokens
        self._cache_read += usage.cache_read_tokens
        self._cache_write += usage.cache_write_tokens
        self._cost += e.cost_usd
        self._model_calls += 1
        self._steps_done = max(self._steps_done, e.step)
        step.expected = len(response.tool_calls)
        if not step.expected:  # an answer: the step is its model call
            out.append(self._end_step(e.step, end))
        return out

    def _model_content(self, attributes: dict[str, AttributeValue], response: ModelResponse) -> None:
        """The conventions' ``gen_ai.input.messages`` (the conversation as journaled: compacted results appear
        whole), ``gen_ai.output.messages`` and ``gen_ai.system_instructions``, and OpenInference's input and
        output values."""
        sent = f"[{','.join(self._messages)}]"
        parts: list[dict[str, Any]] = [{"type": "text", "content": response.text}] if response.text else []
        parts += [
            {"type": "tool_call", "id": c.id, "name": c.name, "arguments": c.arguments} for c in response.tool_calls
        ]
        finish = _FINISH_REASONS.get(response.stop_reason, response.stop_reason)
        said = _dumps([{"role": "assistant", "parts": parts, "finish_reason": finish}])
        attributes["gen_ai.input.messages"] = sent
        attributes["gen_ai.output.messages"] = said
        if self._instructions:
            attributes["gen_ai.system_instructions"] = _dumps([{"type": "text", "content": self._instructions}])
        attributes["input.value"] = sent
        attributes["input.mime_type"] = _JSON
        attributes["output.value"] = said
        attributes["output.mime_type"] = _JSON
        self._messages.append(_dumps({"role": "assistant", "parts": parts}))

    def _step_finished(self, e: StepFinished) -> list[SpanRecord]:
        """A pipeline's step: its span, and when it called the model, one ``chat`` span inside it with what its
        calls used (the journal keeps a step's figures, not each of its calls)."""
        end = _ns(e.at)
        start = min(_ns(e.at - e.latency_s), end)
        run_id = self._run_id
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "CHAIN",
            "agentkeel.step": e.key,
            "agentkeel.run.id": run_id,
        }
        if self._content:
            attributes["output.value"] = _dumps(e.result)
            attributes["output.mime_type"] = _JSON
        step = _Open(span_id(run_id, f"step/{e.key}"), self._run_span, f"step {e.key}", "internal", start, attributes)
        out: list[SpanRecord] = []
        if e.model_calls:
            figures = {
                **self._model_base,
                "gen_ai.usage.input_tokens": e.input_tokens,
                "gen_ai.usage.output_tokens": e.output_tokens,
                "llm.token_count.prompt": e.input_tokens,
                "llm.token_count.completion": e.output_tokens,
                "llm.token_count.total": e.input_tokens + e.output_tokens,
                "agentkeel.cost_usd": e.cost_usd,
                "agentkeel.model_calls": e.model_calls,
                "agentkeel.step": e.key,
            }
            chat = _Open(span_id(run_id, f"model/{e.key}"), step.span_id, self._chat_name, "client", start, figures)
            out.append(self._record(chat, end))
        out.append(self._record(step, end))
        self._input_tokens += e.input_tokens
        self._output_tokens += e.output_tokens
        self._cost += e.cost_usd
        self._model_calls += e.model_calls
        self._steps_done += 1
        return out

    # -- tool calls -----------------------------------------------------------------------------------------

    def _parent_of_call(self, call: str) -> int:
        number = _step_of(call)
        if number is None:
            return self._run_span
        step = self._steps.get(number)
        return step.span.span_id if step is not None else span_id(self._run_id, f"step/{number}")

    def _tool_span(self, call: str, tool_call_id: str, name: str, start_ns: int) -> _Open:
        attributes: dict[str, AttributeValue] = {
            **self._tool_base,
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": tool_call_id,
            "tool.name": name,
            "agentkeel.call": call,
        }
        if name.startswith("delegate_to_"):
            attributes["agentkeel.child_run.id"] = f"{self._run_id}.{call}"
        return _Open(
            span_id(self._run_id, f"tool/{call}"),
            self._parent_of_call(call),
            f"execute_tool {name}",
            "internal",
            start_ns,
            attributes,
        )

    def _tool_call_started(self, e: ToolCallStarted) -> list[SpanRecord]:
        if e.call in self._tools:
            return []
        span = self._tools[e.call] = self._tool_span(e.call, e.tool_call_id, e.name, _ns(e.at))
        self._names[e.call] = e.name
        self._tool_calls += 1
        if self._content:
            arguments = _dumps(e.arguments)
            span.attributes["gen_ai.tool.call.arguments"] = arguments
            span.attributes["input.value"] = arguments
            span.attributes["input.mime_type"] = _JSON
        return []

    def _tool_call_retrying(self, e: ToolCallRetrying) -> list[SpanRecord]:
        span = self._tools.get(e.call)
        if span is not None:
            shown = self._failure_attributes(e.error)
            shown["agentkeel.attempt"] = e.attempt
            shown["agentkeel.retry.delay_s"] = e.delay_s
            span.add("tool_call_retrying", _ns(e.at), shown)
        return []

    def _tool_call_resumed(self, e: ToolCallResumed) -> list[SpanRecord]:
        span = self._tools.get(e.call)
        if span is not None:
            span.add("tool_call_resumed", _ns(e.at), {"agentkeel.attempt": e.attempt, "agentkeel.resumed.why": e.why})
        return []

    def _call_retry_authorized(self, e: CallRetryAuthorized) -> list[SpanRecord]:
        span = self._tools.get(e.call)
        if span is not None:
            span.add("call_retry_authorized", _ns(e.at), {"agentkeel.by": e.by})
        return []

    def _tool_call_finished(self, e: ToolCallFinished) -> list[SpanRecord]:
        end = _ns(e.at)
        span = self._tools.pop(e.call, None)
        if span is None:  # refused before it could start (unknown tool, invalid arguments, a gate, a budget)
            span = self._tool_span(e.call, e.tool_call_id, e.name, end)
            self._tool_calls += 1
            self._names.setdefault(e.call, e.name)
        attributes = span.attributes
        attributes["agentkeel.tool.attempts"] = e.attempts
        if e.resolved_by:
            attributes["agentkeel.resolved_by"] = e.resolved_by
        error = None
        if e.error is not None:
            self._tool_errors += 1
            attributes["error.type"] = e.error.kind
            if e.error.exception_type:
                attributes["exception.type"] = e.error.exception_type
            error = self._failure_text(e.error)
        if self._content:
            result = e.content if e.result is None else _dumps(e.result)
            attributes["gen_ai.tool.call.result"] = result
            attributes["output.value"] = e.content
            self._tool_result_message(e.tool_call_id, e.content)
        out = [self._record(span, end, error)]
        self._outcome(e.call, end, out)
        return out

    def _call_previewed(self, e: CallPreviewed) -> list[SpanRecord]:
        """A dry run's write call, not made: a span of no length that says so."""
        end = _ns(e.at)
        span = self._tool_span(e.call, e.tool_call_id, e.name, end)
        span.attributes["agentkeel.tool.dry_run"] = True
        span.attributes["agentkeel.tool.has_preview"] = e.has_preview
        self._tool_calls += 1
        if self._content:
            span.attributes["gen_ai.tool.call.arguments"] = _dumps(e.arguments)
            span.attributes["gen_ai.tool.call.result"] = e.content
            self._tool_result_message(e.tool_call_id, e.content)
        out = [self._record(span, end)]
        self._outcome(e.call, end, out)
        return out

    def _tool_result_message(self, tool_call_id: str, content: str) -> None:
        part = {"type": "tool_call_response", "id": tool_call_id, "response": content}
        self._messages.append(_dumps({"role": "tool", "parts": [part]}))

    def _outcome(self, call: str, end_ns: int, out: list[SpanRecord]) -> None:
        """One more of a step's calls has its outcome: the last one ends the step."""
        number = _step_of(call)
        if number is None:
            return
        step = self._steps.get(number)
        if step is not None:
            step.done += 1
            if step.done >= step.expected:
                out.append(self._end_step(number, end_ns))

    def _failure_attributes(self, failure: ToolFailure) -> dict[str, AttributeValue]:
        shown: dict[str, AttributeValue] = {"error.type": failure.kind}
        if failure.exception_type:
            shown["exception.type"] = failure.exception_type
        if self._content:
            shown["error.message"] = failure.message
        return shown

    def _failure_text(self, failure: ToolFailure) -> str:
        """A failed call's status: its kind (and exception type); the sentence the model read only with content,
        since it may quote the call's data."""
        kind = f"{failure.kind} ({failure.exception_type})" if failure.exception_type else failure.kind
        return f"{kind}: {failure.message}" if self._content else kind

    # -- approvals ------------------------------------------------------------------------------------------

    def _approval_requested(self, e: ApprovalRequested) -> list[SpanRecord]:
        if e.call in self._approvals:
            return []
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "CHAIN",
            "gen_ai.tool.name": e.name,
            "gen_ai.tool.call.id": e.tool_call_id,
            "agentkeel.call": e.call,
            "agentkeel.approval.why": e.why,
            "agentkeel.run.id": self._run_id,
        }
        if self._content:
            attributes["gen_ai.tool.call.arguments"] = _dumps(e.arguments)
        self._names[e.call] = e.name
        self._approvals[e.call] = _Open(
            span_id(self._run_id, f"approval/{e.call}"),
            self._parent_of_call(e.call),
            f"await_approval {e.name}",
            "internal",
            _ns(e.at),
            attributes,
        )
        return []

    def _call_approved(self, e: CallApproved) -> list[SpanRecord]:
        span = self._approvals.pop(e.call, None)
        if span is None:
            return []
        span.attributes["agentkeel.approval.decision"] = "approved"
        span.attributes["agentkeel.approval.by"] = e.by
        span.attributes["agentkeel.approval.edited"] = e.arguments is not None
        return [self._record(span, _ns(e.at))]

    def _call_rejected(self, e: CallRejected) -> list[SpanRecord]:
        span = self._approvals.pop(e.call, None)
        if span is None:
            return []
        span.attributes["agentkeel.approval.decision"] = "rejected"
        span.attributes["agentkeel.approval.by"] = e.by
        span.attributes["agentkeel.approval.reason"] = e.reason
        return [self._record(span, _ns(e.at))]

    # -- rollback -------------------------------------------------------------------------------------------

    def _rollback_started(self, e: RollbackStarted) -> list[SpanRecord]:
        out: list[SpanRecord] = []
        at = _ns(e.at)
        self._close_work(at, out, interrupted=True)  # the agent's part is over
        self._close_rollback(at, out, unfinished=False)  # a rollback tried again after a pause
        self._status, self._reason, self._rolling_back = "rolling_back", "rollback", True
        self._rollbacks += 1
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "CHAIN",
            "agentkeel.run.id": self._run_id,
            "agentkeel.rollback.by": e.by,
            "agentkeel.rollback.why": e.why,
            "agentkeel.rollback.calls": e.calls,
        }
        key = f"rollback/{self._rollbacks}"
        self._rollback = _Open(
            span_id(self._run_id, key), self._run_span, f"rollback {self._agent}", "internal", at, attributes
        )
        return out

    def _undo_span(self, call: str, start_ns: int) -> _Open:
        count = self._undo_spans.get(call, 0) + 1
        self._undo_spans[call] = count
        key = f"undo/{call}" if count == 1 else f"undo/{call}#{count}"
        name = self._names.get(call, "")
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "TOOL",
            "gen_ai.tool.name": name,
            "tool.name": name,
            "agentkeel.call": call,
            "agentkeel.run.id": self._run_id,
        }
        parent = self._rollback.span_id if self._rollback is not None else self._run_span
        return _Open(span_id(self._run_id, key), parent, f"compensate {name}", "internal", start_ns, attributes)

    def _compensation_started(self, e: CompensationStarted) -> list[SpanRecord]:
        at = _ns(e.at)
        span = self._undos.get(e.call)
        if span is not None:  # the compensation runs again after a crash: the same span goes on
            span.add("compensation_resumed", at, {"agentkeel.attempt": e.attempt})
            return []
        span = self._undos[e.call] = self._undo_span(e.call, at)
        span.attributes["agentkeel.attempt"] = e.attempt
        return []

    def _compensation_finished(self, e: CompensationFinished) -> list[SpanRecord]:
        end = _ns(e.at)
        span = self._undos.pop(e.call, None)
        if span is None:  # nothing ran: no compensation declared, or a person settled it
            span = self._undo_span(e.call, end)
        attributes = span.attributes
        if e.resolved_by:
            attributes["agentkeel.resolved_by"] = e.resolved_by
        error = None
        if e.error is not None:
            attributes["error.type"] = e.error.kind
            if e.error.exception_type:
                attributes["exception.type"] = e.error.exception_type
            error = self._failure_text(e.error)
        if self._content:
            attributes["output.value"] = e.content
        return [self._record(span, end, error)]

    def _close_rollback(self, end_ns: int, out: list[SpanRecord], *, unfinished: bool) -> None:
        for span in self._undos.values():
            if unfinished:
                span.attributes["agentkeel.unfinished"] = True
                out.append(self._record(span, end_ns))
            else:
                span.attributes["error.type"] = "interrupted"
                out.append(self._record(span, end_ns, "interrupted: no outcome was journaled"))
        self._undos.clear()
        rollback = self._rollback
        if rollback is not None:
            self._rollback = None
            if unfinished:
                rollback.attributes["agentkeel.unfinished"] = True
            out.append(self._record(rollback, end_ns))

    # -- ending open work -----------------------------------------------------------------------------------

    def _close_work(self, end_ns: int, out: list[SpanRecord], *, interrupted: bool) -> None:
        """End the agent's open approvals, calls, model calls and steps: ``interrupted`` (the run ended or rolls
        back, so they never will) or merely unfinished (``close``: they may yet)."""
        for span in self._approvals.values():
            span.attributes["agentkeel.approval.decision"] = "undecided"
            if not interrupted:
                span.attributes["agentkeel.unfinished"] = True
            out.append(self._record(span, end_ns))
        self._approvals.clear()
        for span in self._tools.values():
            if interrupted:
                span.attributes["error.type"] = "interrupted"
                out.append(self._record(span, end_ns, "interrupted: the run went on without an outcome of this call"))
            else:
                span.attributes["agentkeel.unfinished"] = True
                out.append(self._record(span, end_ns))
        self._tools.clear()
        for number, retries in self._retrying.items():  # a model call whose attempts all failed
            step = self._open_step(number, retries.before_ns)
            attributes = {**self._model_base, "agentkeel.step": number}
            model = _Open(
                span_id(self._run_id, f"model/{number}"),
                step.span.span_id,
                self._chat_name,
                "client",
                retries.before_ns,
                attributes,
            )
            model.events = retries.events
            if interrupted:
                attributes["error.type"] = retries.last_kind
                error: str | None = f"{len(retries.events)} attempt(s) failed ({retries.last_kind}); no response"
            else:
                attributes["agentkeel.unfinished"] = True
                error = None
            out.append(self._record(model, end_ns, error))
        self._retrying.clear()
        for number in list(self._steps):
            out.append(self._end_step(number, end_ns))

    def _record(self, span: _Open, end_ns: int, error: str | None = None) -> SpanRecord:
        return SpanRecord(
            trace_id=self._trace,
            span_id=span.span_id,
            parent_id=span.parent_id,
            name=span.name,
            kind=span.kind,
            start_ns=span.start_ns,
            end_ns=max(end_ns, span.start_ns),
            attributes=span.attributes,
            error=error,
            events=tuple(span.events),
        )


_HANDLERS: dict[str, Callable[[SpanBuilder, Any], list[SpanRecord]]] = {
    "run_started": SpanBuilder._run_started,
    "model_retrying": SpanBuilder._model_retrying,
    "model_responded": SpanBuilder._model_responded,
    "tool_call_started": SpanBuilder._tool_call_started,
    "tool_call_retrying": SpanBuilder._tool_call_retrying,
    "tool_call_resumed": SpanBuilder._tool_call_resumed,
    "tool_call_finished": SpanBuilder._tool_call_finished,
    "call_retry_authorized": SpanBuilder._call_retry_authorized,
    "call_previewed": SpanBuilder._call_previewed,
    "approval_requested": SpanBuilder._approval_requested,
    "call_approved": SpanBuilder._call_approved,
    "call_rejected": SpanBuilder._call_rejected,
    "intervened": SpanBuilder._intervened,
    "context_compacted": SpanBuilder._context_compacted,
    "note_written": SpanBuilder._note_written,
    "step_finished": SpanBuilder._step_finished,
    "rollback_started": SpanBuilder._rollback_started,
    "compensation_started": SpanBuilder._compensation_started,
    "compensation_finished": SpanBuilder._compensation_finished,
    "run_paused": SpanBuilder._run_paused,
    "run_resumed": SpanBuilder._run_resumed,
    "run_ended": SpanBuilder._run_ended,
}
"""Each event kind's handler (an event of a kind not listed finishes no span)."""


def journal_spans(
    events: Sequence[Event], *, capture_content: bool = False, finished_only: bool = False
) -> list[SpanRecord]:
    """Every span of a journal, children before parents; the spans still open at its last event end there
    (``finished_only``: left out)."""
    builder = SpanBuilder(capture_content=capture_content)
    spans: list[SpanRecord] = []
    for event in events:
        spans.extend(builder.feed(event))
    if not finished_only:
        spans.extend(builder.close())
    return spans
