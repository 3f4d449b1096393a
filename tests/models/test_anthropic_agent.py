"""Whole runs on Anthropic over the wire: an ``Agent`` driving the real ``anthropic`` SDK at a local server.

A tool call then an answer completes, with usage, cache tokens and cost in the result; a model string reads its
key and server from the environment; a refused key and a persistent server error end the run
``failed(model_error)`` with a sentence for the operator; rate limits and overloads are retried by the engine,
journaled as ``model_retrying``, and the run completes. Provider-level behaviour is in
``test_anthropic_provider.py``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from anthropic_server import AnthropicServer, Reply, error, message, stream, text_block, tool_use_block, usage

from agentkeel import Agent, PriceTable, RetryPolicy, Usage, tool
from agentkeel.core.events import ModelRetrying
from agentkeel.models.anthropic_provider import AnthropicModel

MakeModel = Callable[..., AnthropicModel]


@pytest.fixture(autouse=True)
def no_anthropic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: no key or server from the machine running the suite."""
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer() as running:
        yield running


@pytest.fixture
async def make_model(server: AnthropicServer) -> AsyncIterator[MakeModel]:
    """``make_model(**settings)``: an ``AnthropicModel`` pointed at the server, closed after the test."""
    made: list[AnthropicModel] = []

    def build(name: str = "claude-haiku-4-5", **settings: Any) -> AnthropicModel:
        model = AnthropicModel(name, base_url=server.url, api_key="test", **settings)
        made.append(model)
        return model

    yield build
    for model in made:
        await model.aclose()


def weather_tool(seen: list[str]) -> Any:
    @tool
    def get_weather(city: str) -> dict[str, Any]:
        """The current weather in a city."""
        seen.append(city)
        return {"city": city, "temp_c": 18, "sky": "sunny"}

    return get_weather


def agent_on(model: AnthropicModel, seen: list[str], **settings: Any) -> Agent:
    return Agent(
        name="weather",
        instructions="You are terse.",
        model=model,
        tools=[weather_tool(seen)],
        store="memory://",
        **settings,
    )


async def test_a_run_calls_the_tool_then_answers_with_usage_and_cache_in_its_result(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(
        message(
            tool_use_block("toolu_01", "get_weather", {"city": "Paris"}),
            stop_reason="tool_use",
            use=usage(300, 40, cache_write=2000),
        ),
        message(text_block("Paris: 18°C and sunny."), use=usage(20, 12, cache_read=2000)),
    )
    seen: list[str] = []
    model = make_model()
    result = await agent_on(model, seen).run("Weather in Paris?")
    assert (result.status, result.output, seen) == ("completed", "Paris: 18°C and sunny.", ["Paris"])
    assert result.usage == Usage(
        input_tokens=2300 + 2020, output_tokens=52, cache_read_tokens=2000, cache_write_tokens=2000
    )
    assert result.cost_usd == pytest.approx(PriceTable().cost(model.name, result.usage))
    assert result.cost_usd > 0
    second = server.requests[1].body
    assert second["system"] == "You are terse."
    assert second["tools"][0]["input_schema"]["properties"]["city"]["type"] == "string"
    assert [m["role"] for m in second["messages"]] == ["user", "assistant", "user"]
    (result_block,) = second["messages"][2]["content"]
    assert result_block["tool_use_id"] == "toolu_01"
    assert result_block["is_error"] is False
    assert json.loads(result_block["content"]) == {"city": "Paris", "temp_c": 18, "sky": "sunny"}


async def test_a_streamed_run_recovers_from_malformed_tool_json(server: AnthropicServer, make_model: MakeModel) -> None:
    server.reply(
        stream(tool_use_block("toolu_01", "get_weather", '{"city": Paris}'), stop_reason="tool_use"),
        stream(tool_use_block("toolu_02", "get_weather", {"city": "Paris"}), stop_reason="tool_use"),
        stream(text_block("Paris: 18°C.")),
    )
    seen: list[str] = []
    result = await agent_on(make_model(stream=True), seen).run("Weather in Paris?")
    assert (result.status, result.output, seen, result.tool_errors) == ("completed", "Paris: 18°C.", ["Paris"], 1)
    retried = server.requests[1].body["messages"]
    assert retried[1]["content"] == [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}]
    (told,) = retried[2]["content"]
    assert (told["tool_use_id"], told["is_error"]) == ("toolu_01", True)
    assert "JSON" in told["content"]


async def test_a_run_through_the_model_string_reads_the_environment(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    server.reply(message(text_block("Sunny.")))
    agent = Agent(name="weather", model="anthropic:claude-haiku-4-5", store="memory://")
    assert isinstance(agent.model, AnthropicModel)
    try:
        result = await agent.run("Weather?")
    finally:
        await agent.model.aclose()
    assert (result.status, result.output) == ("completed", "Sunny.")
    assert agent.model.name == "anthropic:claude-haiku-4-5"
    assert server.requests[0].body["model"] == "claude-haiku-4-5"
    assert server.requests[0].api_key == "from-env"


async def test_a_refused_key_fails_the_run_at_once_naming_the_variable(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.always(error("authentication_error", "invalid x-api-key"))
    result = await agent_on(make_model(), []).run("Weather?")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert "ANTHROPIC_API_KEY" in result.detail
    assert len(server.requests) == 1


async def test_a_persistent_server_error_fails_the_run_with_the_providers_message(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.always(error("api_error", "Internal server error"))
    agent = agent_on(make_model(), [], model_retry=RetryPolicy(retries=2, backoff_s=0))
    result = await agent.run("Weather?")
    assert (result.status, result.reason) == ("failed", "model_error")
    assert "Internal server error" in result.detail
    assert len(server.requests) == 3
    retries = [e for e in await agent.store.load(result.run_id) if isinstance(e, ModelRetrying)]
    assert [(e.attempt, e.error_kind) for e in retries] == [(1, "server"), (2, "server")]


@pytest.mark.parametrize(
    ("transient", "kind"),
    [
        (error("rate_limit_error", "rate limited", headers={"retry-after": "0"}), "rate_limit"),
        (error("overloaded_error", "Overloaded"), "server"),
    ],
    ids=["429", "529"],
)
async def test_a_transient_failure_is_retried_and_the_run_completes(
    server: AnthropicServer, make_model: MakeModel, transient: Reply, kind: str
) -> None:
    server.reply(transient, message(text_block("Sunny.")))
    agent = agent_on(make_model(), [], model_retry=RetryPolicy(retries=2, backoff_s=0))
    result = await agent.run("Weather?")
    assert (result.status, result.output) == ("completed", "Sunny.")
    assert len(server.requests) == 2
    retries = [e for e in await agent.store.load(result.run_id) if isinstance(e, ModelRetrying)]
    assert [(e.error_kind, e.delay_s) for e in retries] == [(kind, 0.0)]


def test_one_model_serves_runs_in_successive_event_loops(server: AnthropicServer) -> None:
    """``run_sync`` starts an event loop per run; a client bound to the previous one must not be reused."""
    server.reply(message(text_block("One.")), message(text_block("Two.")))
    model = AnthropicModel("claude-haiku-4-5", base_url=server.url, api_key="test")
    agent = Agent(name="weather", model=model, store="memory://")
    assert agent.run_sync("First?").output == "One."
    assert agent.run_sync("Second?").output == "Two."
    asyncio.run(model.aclose())
