"""The spans of a run, of its steps and of its model calls.

* the run: ``invoke_agent <agent>`` (a pipeline: ``invoke_workflow <pipeline>``), from ``run_started`` to
  ``run_ended``; it nests under ``RunStarted.trace_parent`` when there is one (a subagent under its supervisor's
  delegation). Its pauses, resumes, interventions, compactions and notes are events on it; its totals (tokens, cost,
  steps, calls) are counted as the events come and set when it ends, so the end needs no look back at the journal;
* each step: ``step <n>`` (a pipeline's: ``step <key>``), from its model call's start to its last call's end (the
  calls' outcomes end it: ``span_calls.py``);
* each model call: ``chat <model>`` (a client span). Its failed attempts are journaled before its response, so they
  are held until the response comes and become the span's ``model_retrying`` events, the span starting no later
  than the first of them.

With ``capture_content`` the conversation is kept as it grows, each message already as the conventions' JSON, so a
model call's ``gen_ai.input.messages`` is one join rather than a walk over the journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentkeel.core.events import (
    ContextCompacted,
    Intervened,
    ModelResponded,
    ModelRetrying,
    NoteWritten,
    RunEnded,
    RunPaused,
    RunResumed,
    RunStarted,
    StepFinished,
)
from agentkeel.core.messages import ModelResponse
from agentkeel.observe.ids import parent_span_of, span_id, trace_id_of
from agentkeel.observe.span_records import (
    FINISH_REASONS,
    JSON_MIME,
    MAX_EVENTS,
    AttributeValue,
    SpanEvent,
    SpanRecord,
    dumps,
    provider_and_model,
    to_ns,
)
from agentkeel.observe.span_state import ModelRetries, OpenSpan, SpanState

__all__ = ["RunSpans"]


class RunSpans(SpanState):
    """The builder's handlers for the run's own events, its steps and its model calls."""

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
        provider, model = provider_and_model(e.model)
        self._chat_name = f"chat {model}"
        self._model_base = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.conversation.id": run_id,
            "openinference.span.kind": "LLM",
            "llm.system": provider,
            "llm.provider": provider,
            "llm.model_name": model,
        }  # the run id is the conversation id: each attribute costs the exporter ~3 µs a span to encode
        self._tool_base = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.type": "function",
            "gen_ai.conversation.id": run_id,
            "openinference.span.kind": "TOOL",
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
            self._messages.append(dumps({"role": "user", "parts": [{"type": "text", "content": e.task}]}))
        self._run = OpenSpan(self._run_span, parent_span_of(e.trace_parent), name, "internal", to_ns(e.at), attributes)
        return []

    def _run_paused(self, e: RunPaused) -> list[SpanRecord]:
        self._status, self._reason = "paused", e.reason
        where = self._run or self._rollback
        if where is not None:
            where.add("run_paused", to_ns(e.at), {"agentkeel.pause.reason": e.reason, "agentkeel.calls": e.calls})
        return []

    def _run_resumed(self, e: RunResumed) -> list[SpanRecord]:
        self._status = "rolling_back" if self._rolling_back else "running"
        self._reason = "rollback" if self._rolling_back else ""
        where = self._run or self._rollback
        if where is not None:
            where.add("run_resumed", to_ns(e.at), {"agentkeel.owner": e.owner})
        return []

    def _run_ended(self, e: RunEnded) -> list[SpanRecord]:
        self._status, self._reason = e.status, e.reason
        out: list[SpanRecord] = []
        end = to_ns(e.at)
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
            self._run.add(name, to_ns(at), attributes)
        return []

    def _intervened(self, e: Intervened) -> list[SpanRecord]:
        if self._content:
            self._messages.append(dumps({"role": "user", "parts": [{"type": "text", "content": e.message}]}))
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

    def _close_steps_before(self, step: int, end_ns: int, out: list[SpanRecord]) -> None:
        """A later step began: an earlier one still open (a call that never got an outcome) ends here."""
        for number in [n for n in self._steps if n < step]:
            out.append(self._end_step(number, end_ns))

    def _model_retrying(self, e: ModelRetrying) -> list[SpanRecord]:
        at = to_ns(e.at)
        retries = self._retrying.get(e.step)
        if retries is None:
            retries = self._retrying[e.step] = ModelRetries(self._last_ns, at)
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
        end = to_ns(e.at)
        start = min(to_ns(e.at - e.latency_s), end)
        retries = self._retrying.pop(e.step, None)
        if retries is not None:
            start = min(start, retries.first_ns)
        self._close_steps_before(e.step, start, out)
        step = self._open_step(e.step, start)
        response = e.response
        usage = response.usage
        attributes = {
            **self._model_base,
            "gen_ai.response.finish_reasons": (FINISH_REASONS.get(response.stop_reason, response.stop_reason),),
            "gen_ai.usage.input_tokens": usage.input_tokens,
            "gen_ai.usage.output_tokens": usage.output_tokens,
            "llm.token_count.prompt": usage.input_tokens,
            "llm.token_count.completion": usage.output_tokens,
            "llm.token_count.total": usage.input_tokens + usage.output_tokens,
            "agentkeel.cost_usd": e.cost_usd,
            "agentkeel.step": e.step,
        }
        if response.model and response.model != attributes.get("gen_ai.request.model"):  # said once is enough
            attributes["gen_ai.response.model"] = response.model
        if usage.cache_read_tokens:
            attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read_tokens
            attributes["llm.token_count.prompt_details.cache_read"] = usage.cache_read_tokens
        if usage.cache_write_tokens:
            attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write_tokens
            attributes["llm.token_count.prompt_details.cache_write"] = usage.cache_write_tokens
        if self._content:
            self._model_content(attributes, response)
        model = OpenSpan(
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
        finish = FINISH_REASONS.get(response.stop_reason, response.stop_reason)
        said = dumps([{"role": "assistant", "parts": parts, "finish_reason": finish}])
        attributes["gen_ai.input.messages"] = sent
        attributes["gen_ai.output.messages"] = said
        if self._instructions:
            attributes["gen_ai.system_instructions"] = dumps([{"type": "text", "content": self._instructions}])
        attributes["input.value"] = sent
        attributes["input.mime_type"] = JSON_MIME
        attributes["output.value"] = said
        attributes["output.mime_type"] = JSON_MIME
        self._messages.append(dumps({"role": "assistant", "parts": parts}))

    def _step_finished(self, e: StepFinished) -> list[SpanRecord]:
        """A pipeline's step: its span, and when it called the model, one ``chat`` span inside it with what its
        calls used (the journal keeps a step's figures, not each of its calls)."""
        end = to_ns(e.at)
        start = min(to_ns(e.at - e.latency_s), end)
        run_id = self._run_id
        attributes: dict[str, AttributeValue] = {
            "openinference.span.kind": "CHAIN",
            "agentkeel.step": e.key,
            "agentkeel.run.id": run_id,
        }
        if self._content:
            attributes["output.value"] = dumps(e.result)
            attributes["output.mime_type"] = JSON_MIME
        step = OpenSpan(
            span_id(run_id, f"step/{e.key}"), self._run_span, f"step {e.key}", "internal", start, attributes
        )
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
            chat = OpenSpan(span_id(run_id, f"model/{e.key}"), step.span_id, self._chat_name, "client", start, figures)
            out.append(self._record(chat, end))
        out.append(self._record(step, end))
        self._input_tokens += e.input_tokens
        self._output_tokens += e.output_tokens
        self._cost += e.cost_usd
        self._model_calls += e.model_calls
        self._steps_done += 1
        return out
