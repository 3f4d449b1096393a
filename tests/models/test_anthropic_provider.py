"""The Anthropic provider over the wire: the real ``anthropic`` SDK against a local server with the API's shapes.

Nothing is mocked: ``AnthropicModel`` builds the SDK's client, the SDK speaks HTTP to ``anthropic_server`` on
127.0.0.1, and the tests read both what came back and what the SDK sent (system prompt, alternating roles,
``tool_result`` blocks, tool schemas, ``max_tokens``, the API key). Whole runs through an ``Agent`` are in
``test_anthropic_agent.py``.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anthropic
import pytest
from anthropic_server import (
    AnthropicServer,
    Reply,
    error,
    message,
    stream,
    text_block,
    tool_use_block,
    usage,
)

from agentkeel import (
    AssistantMessage,
    ModelError,
    ModelRequest,
    ToolCall,
    ToolResultMessage,
    ToolSchema,
    Usage,
    UserMessage,
)
from agentkeel.core.messages import Message
from agentkeel.models.anthropic_provider import AnthropicModel, retry_after

WEATHER = ToolSchema(
    name="get_weather",
    description="The current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
ASK = ModelRequest(instructions="You are terse.", messages=[UserMessage(text="Weather in Paris?")], tools=(WEATHER,))

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
        settings.setdefault("base_url", server.url)
        settings.setdefault("api_key", "test")
        model = AnthropicModel(name, **settings)
        made.append(model)
        return model

    yield build
    for model in made:
        await model.aclose()


async def failure(model: AnthropicModel, request: ModelRequest = ASK) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await model.respond(request)
    return caught.value


# -- responses ------------------------------------------------------------------------------------------------


async def test_a_tool_use_answer_gives_its_text_calls_stop_reason_usage_and_model(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(
        message(
            text_block("I'll look that up."),
            tool_use_block("toolu_01A09q90qw90lq917835lq9", "get_weather", {"city": "Paris"}),
            stop_reason="tool_use",
            use=usage(472, 89),
        )
    )
    response = await make_model().respond(ASK)
    assert response.text == "I'll look that up."
    assert response.tool_calls == (
        ToolCall(id="toolu_01A09q90qw90lq917835lq9", name="get_weather", arguments={"city": "Paris"}),
    )
    assert response.stop_reason == "tool_use"
    assert response.usage == Usage(input_tokens=472, output_tokens=89)
    assert response.model == "claude-haiku-4-5-20251001"


async def test_parallel_tool_use_blocks_become_calls_in_their_order(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(
        message(
            tool_use_block("toolu_01", "get_weather", {"city": "Paris"}),
            tool_use_block("toolu_02", "get_weather", {"city": "Oslo"}),
            stop_reason="tool_use",
        )
    )
    response = await make_model().respond(ASK)
    assert [(c.id, c.arguments) for c in response.tool_calls] == [
        ("toolu_01", {"city": "Paris"}),
        ("toolu_02", {"city": "Oslo"}),
    ]
    assert response.text == ""


async def test_a_text_answer_has_no_calls_and_joins_its_text_blocks(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(message(text_block("It is 18°C "), text_block("and sunny.")))
    response = await make_model().respond(ASK)
    assert (response.text, response.tool_calls, response.stop_reason) == ("It is 18°C and sunny.", (), "end_turn")


@pytest.mark.parametrize(
    ("wire", "ours"),
    [
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("refusal", "content_filter"),
        ("pause_turn", "other"),
        ("model_context_window_exceeded", "max_tokens"),
    ],
)
async def test_stop_reasons_map_to_the_engines(
    server: AnthropicServer, make_model: MakeModel, wire: str, ours: str
) -> None:
    server.reply(message(text_block("It is 18°C and"), stop_reason=wire))
    assert (await make_model().respond(ASK)).stop_reason == ours


async def test_cache_reads_and_writes_are_counted_in_the_input_and_apart(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(message(text_block("Sunny."), use=usage(21, 7, cache_write=1800, cache_read=12000)))
    response = await make_model().respond(ASK)
    assert response.usage == Usage(
        input_tokens=21 + 1800 + 12000, output_tokens=7, cache_read_tokens=12000, cache_write_tokens=1800
    )


# -- requests -------------------------------------------------------------------------------------------------


async def test_the_request_carries_system_tools_max_tokens_and_the_key(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(message(text_block("Sunny.")), message(text_block("Sunny.")))
    model = make_model(temperature=0.2)
    await model.respond(ASK)
    await model.respond(
        ModelRequest(instructions="", messages=[UserMessage(text="hi")], max_output_tokens=256, temperature=0.9)
    )
    first, second = server.requests
    assert first.path == "/v1/messages"
    assert first.api_key == "test"
    assert "anthropic-version" in first.headers
    assert first.headers.get("x-stainless-retry-count") in (None, "0")
    assert first.body["model"] == "claude-haiku-4-5"
    assert first.body["system"] == "You are terse."
    assert first.body["max_tokens"] == 4096
    assert first.body["temperature"] == 0.2
    assert first.body["tools"] == [
        {"name": "get_weather", "input_schema": WEATHER.parameters, "description": "The current weather in a city."}
    ]
    assert "stream" not in first.body or first.body["stream"] is False
    assert "system" not in second.body and "tools" not in second.body
    assert (second.body["max_tokens"], second.body["temperature"]) == (256, 0.9)  # the request's own settings win


async def test_the_conversation_alternates_with_tool_results_in_one_user_message(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    conversation: list[Message] = [
        UserMessage(text="Weather in Paris and Oslo?"),
        AssistantMessage(
            text="Checking both.",
            tool_calls=(
                ToolCall(id="toolu_01", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(id="toolu_02", name="get_weather", arguments='{"city": "Oslo"}'),
            ),
        ),
        ToolResultMessage(call_id="toolu_01", name="get_weather", content='{"temp_c": 18}'),
        ToolResultMessage(call_id="toolu_02", name="get_weather", content="Oslo is not covered.", is_error=True),
        AssistantMessage(text="Paris is 18°C; Oslo I cannot see."),
        UserMessage(text="And Rome?"),
    ]
    server.reply(message(text_block("Rome is 24°C.")))
    await make_model().respond(ModelRequest(instructions="", messages=conversation))
    assert server.requests[0].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "is_error": False, "content": '{"temp_c": 18}'},
                {"type": "tool_result", "tool_use_id": "toolu_02", "is_error": True, "content": "Oslo is not covered."},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "Paris is 18°C; Oslo I cannot see."}]},
        {"role": "user", "content": [{"type": "text", "text": "And Rome?"}]},
    ]


async def test_malformed_arguments_go_back_as_an_empty_input_and_the_conversation_stays_valid(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    """The engine already told the model its JSON was bad (in the call's result); the turn must still be sent."""
    conversation: list[Message] = [
        UserMessage(text="Weather?"),
        AssistantMessage(tool_calls=(ToolCall(id="toolu_01", name="get_weather", arguments='{"city": "Par'),)),
        ToolResultMessage(call_id="toolu_01", name="get_weather", content="not valid JSON", is_error=True),
        AssistantMessage(text="\n"),  # a turn with nothing in it: the API refuses blank text and empty content
        UserMessage(text="Try again."),
    ]
    server.reply(message(text_block("Sorry.")))
    await make_model().respond(ModelRequest(instructions="", messages=conversation))
    sent = server.requests[0].body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [{"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}]
    assert [block["type"] for block in sent[2]["content"]] == ["tool_result", "text"]


# -- errors ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "kind", "retryable", "status", "says"),
    [
        (
            error(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                headers={"retry-after": "0.25"},
            ),
            "rate_limit",
            True,
            429,
            "per-minute rate limit",
        ),
        (error("api_error", "Internal server error"), "server", True, 500, "Internal server error"),
        (error("overloaded_error", "Overloaded"), "server", True, 529, "Overloaded"),
        (error("authentication_error", "invalid x-api-key"), "auth", False, 401, "ANTHROPIC_API_KEY"),
        (error("permission_error", "Your API key does not have permission"), "auth", False, 403, "ANTHROPIC_API_KEY"),
        (
            error("invalid_request_error", "model: Input should be a valid model"),
            "bad_request",
            False,
            400,
            "valid model",
        ),
        (error("not_found_error", "model: claude-nope"), "bad_request", False, 404, "model: claude-nope"),
    ],
    ids=["429", "500", "529", "401", "403", "400", "404"],
)
async def test_http_errors_become_model_errors_the_engine_can_act_on(
    server: AnthropicServer, make_model: MakeModel, reply: Reply, kind: str, retryable: bool, status: int, says: str
) -> None:
    server.reply(reply)
    failed = await failure(make_model())
    assert (failed.kind, failed.retryable, failed.status_code) == (kind, retryable, status)
    assert says in failed.message
    assert len(server.requests) == 1  # the SDK's own retries are off: the engine retries, and journals it
    if kind == "rate_limit":
        assert failed.retry_after_s == 0.25


async def test_an_overloaded_error_is_a_server_error_whatever_its_status(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(error("overloaded_error", "Overloaded", status=429))
    failed = await failure(make_model())
    assert (failed.kind, failed.retryable) == ("server", True)


def test_retry_after_reads_seconds_milliseconds_and_dates() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({}) is None
    assert retry_after({"retry-after": "soon"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after({"retry-after": later}) or 0) <= 30


async def test_without_a_key_no_request_is_sent_and_the_error_names_the_variable(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    failed = await failure(make_model(api_key=None))
    assert (failed.kind, failed.retryable) == ("auth", False)
    assert "ANTHROPIC_API_KEY" in failed.message
    assert server.requests == []


async def test_the_key_and_the_server_come_from_the_environment(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    server.reply(message(text_block("Sunny.")))
    model = AnthropicModel("claude-haiku-4-5")
    try:
        assert (await model.respond(ASK)).text == "Sunny."
    finally:
        await model.aclose()
    assert server.requests[0].api_key == "from-env"


async def test_a_server_that_does_not_answer_in_time_is_a_retryable_timeout(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(Reply(hold=True))
    failed = await failure(make_model(timeout_s=0.2))
    assert (failed.kind, failed.retryable) == ("timeout", True)


async def test_a_server_that_cannot_be_reached_is_a_retryable_connection_error(make_model: MakeModel) -> None:
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    failed = await failure(make_model(base_url=f"http://127.0.0.1:{port}"))
    assert (failed.kind, failed.retryable) == ("connection", True)
    assert f"127.0.0.1:{port}" in failed.message


async def test_a_callers_client_is_used_without_the_sdks_retries(server: AnthropicServer) -> None:
    client = anthropic.AsyncAnthropic(api_key="own", base_url=server.url, max_retries=5)
    server.always(error("api_error", "Internal server error"))
    model = AnthropicModel("claude-haiku-4-5", client=client)
    try:
        failed = await failure(model)
    finally:
        await client.close()
    assert failed.kind == "server"
    assert len(server.requests) == 1
    assert server.requests[0].api_key == "own"


# -- streaming ------------------------------------------------------------------------------------------------


async def test_a_stream_adds_up_to_the_same_response_as_the_plain_call(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    content = (
        text_block("I'll check both cities at once."),
        tool_use_block("toolu_01", "get_weather", {"city": "Paris", "units": "metric"}),
        tool_use_block("toolu_02", "get_weather", {"city": "Oslo", "units": "metric"}),
    )
    counted = usage(40, 95, cache_write=0, cache_read=1500)
    server.reply(
        message(*content, stop_reason="tool_use", use=counted), stream(*content, stop_reason="tool_use", use=counted)
    )
    plain = await make_model().respond(ASK)
    streamed = await make_model(stream=True).respond(ASK)
    assert streamed == plain
    assert len(streamed.tool_calls) == 2
    assert streamed.usage == Usage(input_tokens=1540, output_tokens=95, cache_read_tokens=1500)
    assert server.requests[1].body["stream"] is True


async def test_a_streamed_tool_input_that_does_not_parse_is_kept_as_text(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    """The output ran out mid-input: the engine turns the raw text into a message the model can act on."""
    server.reply(stream(tool_use_block("toolu_01", "get_weather", '{"city": "Par'), stop_reason="max_tokens"))
    response = await make_model(stream=True).respond(ASK)
    assert response.tool_calls == (ToolCall(id="toolu_01", name="get_weather", arguments='{"city": "Par'),)
    assert response.stop_reason == "max_tokens"


async def test_an_error_event_mid_stream_is_a_model_error(server: AnthropicServer, make_model: MakeModel) -> None:
    server.reply(stream(text_block("It is"), error_after=(3, "overloaded_error", "Overloaded")))
    failed = await failure(make_model(stream=True))
    assert (failed.kind, failed.retryable, failed.status_code) == ("server", True, 529)
    assert "Overloaded" in failed.message


async def test_a_stream_cut_mid_body_is_a_retryable_connection_error(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.reply(stream(text_block("It is 18°C and sunny in Paris today."), cut_after=4))
    failed = await failure(make_model(stream=True))
    assert (failed.kind, failed.retryable) == ("connection", True)


async def test_a_stream_that_ends_before_message_stop_is_retryable(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    whole = stream(text_block("Sunny."))
    assert whole.events is not None
    server.reply(Reply(events=whole.events[:-2]))  # no message_delta, no message_stop; the body ends cleanly
    failed = await failure(make_model(stream=True))
    assert (failed.kind, failed.retryable) == ("connection", True)
