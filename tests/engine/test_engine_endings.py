"""Every way a run ends is a status with a reason; no exception reaches the caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ConfigError,
    ModelError,
    ModelRequest,
    ModelResponse,
    RetryPolicy,
    ScriptedModel,
    Store,
    ToolContext,
    call,
    calls,
    cancel_run,
    reply,
    tool,
)
from agentkeel.core.events import ModelRetrying, RunEnded, ToolCallFinished
from agentkeel.core.state import replay

MakeAgent = Callable[..., Agent]


@tool
def lookup() -> str:
    """Look something up."""
    return "nothing new"


class RaisingModel:
    """Answers its first turns from a script, then raises."""

    def __init__(self, error: BaseException, turns: list[ModelResponse] | None = None) -> None:
        self.name = "raising"
        self._error = error
        self._turns = list(turns or [])
        self.calls = 0

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self._turns:
            return self._turns.pop(0)
        raise self._error


async def last_event(store: Store, run_id: str) -> RunEnded:
    event = (await store.load(run_id))[-1]
    assert isinstance(event, RunEnded)
    return event


async def test_completed(make_agent: MakeAgent, store: Store) -> None:
    result = await make_agent(["All done."]).run("go")
    assert (result.status, result.reason, result.output, result.detail) == ("completed", "", "All done.", "")
    assert (await last_event(store, result.run_id)).status == "completed"


async def test_max_steps_exceeded(make_agent: MakeAgent, recording_model: Any, store: Store) -> None:
    model = recording_model(lambda request: call("lookup"))  # never answers
    result = await make_agent(model, [lookup], max_steps=3).run("loop forever")
    assert (result.status, result.reason) == ("failed", "max_steps_exceeded")
    assert result.steps == 3 and model.calls == 3
    assert "3 steps" in result.detail and "max_steps=3" in result.detail
    ended = await last_event(store, result.run_id)
    assert (ended.status, ended.reason) == ("failed", "max_steps_exceeded")


async def test_a_partial_answer_is_kept_when_the_steps_run_out(make_agent: MakeAgent) -> None:
    turn = call("lookup")
    partial = ModelResponse(text="Still checking the warehouse.", tool_calls=turn.tool_calls, stop_reason="tool_use")
    result = await make_agent([partial, partial], [lookup], max_steps=2).run("go")
    assert result.reason == "max_steps_exceeded"
    assert result.output == "Still checking the warehouse."


async def test_timeout_while_the_model_thinks(make_agent: MakeAgent, recording_model: Any) -> None:
    slow = recording_model(["too late"], latency_s=30.0)
    result = await asyncio.wait_for(make_agent(slow, timeout=0.05).run("go"), timeout=10)
    assert (result.status, result.reason) == ("failed", "timeout")
    assert "Agent(timeout=...)" in result.detail


async def test_timeout_is_checked_between_steps(make_agent: MakeAgent) -> None:
    gate = asyncio.Event()

    @tool
    async def slow_lookup() -> str:
        await asyncio.wait_for(gate.wait(), timeout=0.2)  # outlives the run's limit, then gives up
        return "late"

    result = await make_agent([call("slow_lookup"), "never asked"], [slow_lookup], timeout=0.05).run("go")
    assert (result.status, result.reason) == ("failed", "timeout")
    assert result.steps == 1


async def test_model_error_when_the_script_runs_out(make_agent: MakeAgent) -> None:
    result = await make_agent([call("lookup")], [lookup]).run("go")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert "the scripted model has no turn 2" in result.detail


async def test_model_error_raised_by_the_model(make_agent: MakeAgent, store: Store) -> None:
    model = RaisingModel(ModelError("invalid model name", kind="bad_request", status_code=400), [call("lookup")])
    result = await make_agent(model, [lookup]).run("go")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert result.detail == "the model failed: invalid model name"
    assert result.steps == 1
    assert model.calls == 2  # not retried: the same request cannot succeed
    ended = await last_event(store, result.run_id)
    assert ended.error == "the model failed: invalid model name"


async def test_a_persistent_transient_model_error_fails_after_the_retries(make_agent: MakeAgent, store: Store) -> None:
    model = RaisingModel(ModelError("rate limited", retryable=True, status_code=429, kind="rate_limit"))
    result = await make_agent(model, model_retry=RetryPolicy(retries=2, backoff_s=0.0)).run("go")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert result.detail == "the model failed: rate limited (after 3 attempts)"
    assert model.calls == 3
    retries = [e for e in await store.load(result.run_id) if isinstance(e, ModelRetrying)]
    assert [(e.step, e.attempt, e.error_kind, e.message) for e in retries] == [
        (1, 1, "rate_limit", "rate limited"),
        (1, 2, "rate_limit", "rate limited"),
    ]


async def test_a_transient_model_error_is_retried_and_the_run_completes(make_agent: MakeAgent, store: Store) -> None:
    class FlakyModel:
        name = "flaky"

        def __init__(self) -> None:
            self.calls = 0

        async def respond(self, request: ModelRequest) -> ModelResponse:
            self.calls += 1
            if self.calls == 1:
                raise ModelError("overloaded", retryable=True, status_code=529, kind="server")
            return reply("fine")

    model = FlakyModel()
    result = await make_agent(model).run("go")
    assert (result.status, result.output, model.calls) == ("completed", "fine", 2)
    state = replay(await store.load(result.run_id))
    assert state.model_retries == 1 and state.model_calls == 1


@pytest.mark.parametrize("error", [RuntimeError("socket closed"), KeyError("choices"), TimeoutError("read timeout")])
async def test_any_exception_from_the_model_is_a_model_error(make_agent: MakeAgent, error: Exception) -> None:
    result = await make_agent(RaisingModel(error)).run("go")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert type(error).__name__ in result.detail or "timed out" in result.detail


async def test_a_model_returning_something_else_is_a_model_error(make_agent: MakeAgent) -> None:
    class Confused:
        name = "confused"

        async def respond(self, request: ModelRequest) -> Any:
            return {"text": "hi"}

    result = await make_agent(Confused()).run("go")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert "not a ModelResponse" in result.detail


async def test_cancelled_while_a_tool_runs(make_agent: MakeAgent, recording_model: Any, store: Store) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    @tool(effect="write", idempotent=True)
    async def ship(ctx: ToolContext) -> str:
        runs.append(ctx.call)
        entered.set()
        await gate.wait()
        return "shipped"

    model = recording_model([call("ship"), call("ship"), reply("done")])
    agent = make_agent(model, [ship])
    task = asyncio.create_task(agent.run("ship twice", run_id="c1"))
    await entered.wait()

    seen = await cancel_run(store, "c1", by="ops", reason="customer withdrew")
    assert seen.status == "running"  # the driver holds the run; it stops at its next call
    gate.set()
    result = await task

    assert (result.status, result.reason) == ("cancelled", "cancelled")
    assert result.detail == "cancelled by ops: customer withdrew"
    assert runs == ["1.1"]
    assert model.calls == 1
    ended = await last_event(store, "c1")
    assert (ended.status, ended.by) == ("cancelled", "ops")
    assert any(isinstance(e, ToolCallFinished) and e.result == "shipped" for e in await store.load("c1"))


async def test_calls_left_in_a_response_are_skipped_once_cancelled(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    @tool(effect="write", idempotent=True)
    async def step(ctx: ToolContext, n: int) -> int:
        runs.append(ctx.call)
        entered.set()
        await gate.wait()
        return n

    model = recording_model([calls(("step", {"n": 1}), ("step", {"n": 2})), reply("done")])
    task = asyncio.create_task(make_agent(model, [step]).run("go", run_id="c2"))
    await entered.wait()
    await cancel_run(store, "c2", by="ops", reason="stop")
    gate.set()
    result = await task
    assert result.status == "cancelled"
    assert runs == ["1.1"]
    skipped = [e for e in await store.load("c2") if isinstance(e, ToolCallFinished) and e.error]
    assert [(e.call, e.error.kind) for e in skipped] == [("1.2", "skipped")]  # type: ignore[union-attr]


async def test_no_exception_escapes_but_setup_mistakes(make_agent: MakeAgent) -> None:
    with pytest.raises(ConfigError, match="task must be a non-empty string"):
        await make_agent(["hi"]).run("   ")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_steps": 0}, "max_steps must be a positive integer"),
        ({"max_steps": True}, "max_steps must be a positive integer"),
        ({"timeout": -1}, "timeout must be a positive number"),
        ({"name": " "}, "must be a non-empty string"),
        ({"lease_s": 0}, "lease_s must be positive"),
        ({"model": "gpt-4"}, "write it as provider:name"),
        ({"model": "acme:big"}, "unknown provider 'acme'"),
        ({"model": 42}, "must be a Model"),
    ],
)
def test_agent_settings_are_checked(settings: dict[str, Any], message: str) -> None:
    config: dict[str, Any] = {"name": "a", "model": ["hi"], "store": "memory://"}
    config.update(settings)
    if isinstance(config["model"], list):
        config["model"] = ScriptedModel(config["model"])
    with pytest.raises(ConfigError, match=message):
        Agent(**config)


def test_replace_copies_an_agent_and_refuses_unknown_settings() -> None:
    agent = Agent(name="a", model=ScriptedModel(["hi"]), store="memory://", max_steps=4)
    other = agent.replace(max_steps=9)
    assert (other.name, other.max_steps, agent.max_steps) == ("a", 9, 4)
    with pytest.raises(ConfigError, match="no setting\\(s\\) max_step"):
        agent.replace(max_step=3)


def test_run_sync_runs_its_own_loop() -> None:
    agent = Agent(name="a", model=ScriptedModel(["hello"]), store="memory://")
    result = agent.run_sync("hi")
    assert result.status == "completed"
    assert agent.resume_sync(result.run_id) == result
