"""Whole runs of an ``Agent`` on ``OpenAIModel``, against the local server: the engine and the wire together.

A tool call then an answer; malformed arguments answered with an actionable message and corrected; a refused
key ending the run at once; rate limits and server errors retried (and journaled) until the server recovers, or
ending the run ``failed(model_error)`` with the server's own words when it does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from openai_server import (
    SERVER_ERROR,
    FakeOpenAI,
    calls,
    function_call,
    rate_limited,
    server_error,
    streamed_calls,
    streamed_text,
    text,
    unauthorized,
)

from agentkeel import Agent, RetryPolicy, tool
from agentkeel.core.events import ModelRetrying
from agentkeel.models.openai_provider import OpenAIModel

ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS")
FORECAST = {"city": "Lisbon", "sky": "sunny", "celsius": 21}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with FakeOpenAI() as fake:
        yield fake
    assert fake.unexpected == 0, f"{fake.unexpected} request(s) more than the test expected"


def weather_agent(server: FakeOpenAI, seen: list[str], **model_options: Any) -> Agent:
    @tool
    def get_weather(city: str) -> dict[str, Any]:
        """Today's weather in a city."""
        seen.append(city)
        return {**FORECAST, "city": city}

    return Agent(
        name="weather",
        instructions="Answer with today's weather.",
        model=OpenAIModel("test-model", base_url=server.url, api_key="sk-test", **model_options),
        tools=[get_weather],
        store="memory://",
        model_retry=RetryPolicy(retries=2, backoff_s=0.0, max_backoff_s=0.0),
    )


async def test_a_run_calls_a_tool_then_answers(server: FakeOpenAI) -> None:
    server.queue(calls(function_call("call_w1", "get_weather", {"city": "Lisbon"})), text("Sunny, 21°C in Lisbon."))
    seen: list[str] = []
    result = await weather_agent(server, seen).run("Weather in Lisbon?")

    assert result.status == "completed", result.detail
    assert result.output == "Sunny, 21°C in Lisbon."
    assert seen == ["Lisbon"]
    assert result.usage.input_tokens == 104  # two calls of 52 prompt tokens each, as the server reported
    second = server.requests[1].body["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Lisbon"}'}
    assert second[3]["tool_call_id"] == "call_w1"
    assert json.loads(second[3]["content"]) == FORECAST


async def test_malformed_arguments_get_an_actionable_message_and_the_model_corrects_its_call(
    server: FakeOpenAI,
) -> None:
    server.queue(
        calls(function_call("call_bad", "get_weather", '{"city": "Lisbon"')),
        calls(function_call("call_good", "get_weather", '{"city": "Lisbon"}')),
        text("Sunny in Lisbon."),
    )
    seen: list[str] = []
    result = await weather_agent(server, seen).run("Weather in Lisbon?")

    assert result.status == "completed", result.detail
    assert seen == ["Lisbon"]  # the malformed call never ran
    told = server.requests[1].body["messages"][-1]
    assert told["role"] == "tool" and told["tool_call_id"] == "call_bad"
    assert told["content"].startswith("Error: The arguments for get_weather are not valid JSON")
    assert "city" in told["content"]  # it names the fields to send
    assert server.requests[1].body["messages"][-2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Lisbon"'


async def test_a_refused_key_ends_the_run_at_once_naming_the_variable(server: FakeOpenAI) -> None:
    server.queue(unauthorized())
    result = await weather_agent(server, []).run("Weather in Lisbon?")

    assert (result.status, result.reason) == ("failed", "model_error")
    assert "OPENAI_API_KEY" in result.detail
    assert len(server.requests) == 1  # not retried


@pytest.mark.parametrize(
    ("failing", "kind"),
    [(rate_limited(**{"retry-after": "0"}), "rate_limit"), (server_error(500), "server")],
    ids=["429", "500"],
)
async def test_a_transient_failure_is_retried_and_journaled_then_the_run_completes(
    server: FakeOpenAI, failing: Any, kind: str
) -> None:
    server.queue(failing, calls(function_call("call_w1", "get_weather", {"city": "Porto"})), failing, text("Sunny."))
    agent = weather_agent(server, [])
    result = await agent.run("Weather in Porto?")

    assert result.status == "completed", result.detail
    retries = [e for e in await agent.store.load(result.run_id) if isinstance(e, ModelRetrying)]
    assert [(e.step, e.attempt, e.error_kind) for e in retries] == [(1, 1, kind), (2, 1, kind)]
    assert len(server.requests) == 4


async def test_a_persistent_server_error_fails_the_run_with_the_servers_words(server: FakeOpenAI) -> None:
    server.queue(server_error(), server_error(), server_error())
    result = await weather_agent(server, []).run("Weather in Porto?")

    assert (result.status, result.reason) == ("failed", "model_error")
    assert SERVER_ERROR in result.detail
    assert "after 3 attempts" in result.detail
    assert len(server.requests) == 3


async def test_a_streamed_run_calls_a_tool_then_answers(server: FakeOpenAI) -> None:
    server.queue(
        streamed_calls((0, "call_s1", "get_weather", '{"ci'), (0, "", "", 'ty": "Faro"}')),
        streamed_text("Sunny ", "in Faro."),
    )
    seen: list[str] = []
    result = await weather_agent(server, seen, stream=True).run("Weather in Faro?")

    assert result.status == "completed", result.detail
    assert (result.output, seen) == ("Sunny in Faro.", ["Faro"])
    assert result.usage.output_tokens == 36
