"""OpenTelemetry metrics of runs, recorded from the same finished spans that tracing emits (so a metric and a
trace never disagree, and a resumed run is not counted twice).

GenAI conventions: ``gen_ai.client.token.usage`` (histogram of tokens per model call, by ``gen_ai.token.type``) and
``gen_ai.client.operation.duration`` (seconds per model call). Ours: ``agentkeel.runs`` (runs that ended, by agent,
status and reason), ``agentkeel.run.cost`` (USD per run), ``agentkeel.run.steps`` (steps per run),
``agentkeel.tool.calls`` and ``agentkeel.tool.errors`` (by tool and, for errors, ``error.type``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentkeel.observe.spans import SpanRecord

_MODEL_KEYS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model")
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class RunMetrics:
    """The instruments, made once per meter."""

    def __init__(self, meter: Any) -> None:
        self._tokens = _histogram(
            meter, "gen_ai.client.token.usage", "{token}", "Tokens used per model call", _TOKEN_BUCKETS
        )
        self._duration = _histogram(
            meter, "gen_ai.client.operation.duration", "s", "Duration of model calls", _DURATION_BUCKETS
        )
        self._runs = meter.create_counter("agentkeel.runs", unit="{run}", description="Runs that ended")
        self._cost = meter.create_histogram("agentkeel.run.cost", unit="USD", description="Cost per run")
        self._steps = meter.create_histogram("agentkeel.run.steps", unit="{step}", description="Steps per run")
        self._tool_calls = meter.create_counter("agentkeel.tool.calls", unit="{call}", description="Tool calls")
        self._tool_errors = meter.create_counter(
            "agentkeel.tool.errors", unit="{call}", description="Tool calls that failed"
        )

    def record(self, span: SpanRecord) -> None:
        attributes = span.attributes
        operation = attributes.get("gen_ai.operation.name")
        if operation == "chat":
            common = {key: attributes[key] for key in _MODEL_KEYS if key in attributes}
            for kind, key in (("input", "gen_ai.usage.input_tokens"), ("output", "gen_ai.usage.output_tokens")):
                value = attributes.get(key)
                if isinstance(value, int):
                    self._tokens.record(value, {**common, "gen_ai.token.type": kind})
            if span.error is not None:
                common["error.type"] = str(attributes.get("error.type", "error"))
            self._duration.record((span.end_ns - span.start_ns) / 1e9, common)
        elif operation == "execute_tool":
            tool = {"gen_ai.tool.name": str(attributes.get("gen_ai.tool.name", ""))}
            self._tool_calls.add(1, tool)
            if span.error is not None:
                self._tool_errors.add(1, {**tool, "error.type": str(attributes.get("error.type", "error"))})
        elif operation in ("invoke_agent", "invoke_workflow"):
            status = str(attributes.get("agentkeel.run.status", ""))
            if status in ("running", "paused"):  # a snapshot, not an end
                return
            agent = {"gen_ai.agent.name": str(attributes.get("gen_ai.agent.name", ""))}
            reason = str(attributes.get("agentkeel.run.reason", ""))
            self._runs.add(1, {**agent, "agentkeel.run.status": status, "agentkeel.run.reason": reason})
            cost = attributes.get("agentkeel.run.cost_usd")
            if isinstance(cost, int | float):
                self._cost.record(float(cost), agent)
            steps = attributes.get("agentkeel.run.steps")
            if isinstance(steps, int):
                self._steps.record(steps, agent)


def _histogram(meter: Any, name: str, unit: str, description: str, buckets: tuple[float, ...]) -> Any:
    try:  # the conventions' advisory bucket boundaries, where the API supports them
        return meter.create_histogram(
            name, unit=unit, description=description, explicit_bucket_boundaries_advisory=list(buckets)
        )
    except TypeError:
        return meter.create_histogram(name, unit=unit, description=description)
