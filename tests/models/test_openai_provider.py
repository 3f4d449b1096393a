"""``OpenAIModel`` on the wire: the real ``openai`` SDK against a local server that answers as the API does.

What the SDK sends (system message, tool schemas, tool results quoting their call ids, arguments as JSON text)
and what comes back (text, parallel tool calls with their raw arguments, stop reasons, usage, streams), and every
failure turned into a ``ModelError`` whose kind says whether the engine may try again.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from openai_server import (
    BAD_KEY,
    RATE_LIMITED,
    SERVER_ERROR,
    FakeOpenAI,
    Reply,
    calls,
    chunk,
    completion,
    error,
    function_call,
    rate_limited,
    server_error,
    streamed_calls,
    streamed_text,
    text,
    unauthorized,
    unknown_model,
    usage,
)

from agentkeel.core.messages import (
    AssistantMessage,
    ModelRequest,
    ToolCall,
    ToolResultMessage,
    ToolSchema,
    Usage,
    UserMessage,
)
from agentkeel.errors import ConfigError, ModelError
from agentkeel.models.openai_provider import OpenAIModel
from agentkeel.models.resolve import resolve_model

INSTRUCTIONS = "You answer questions about orders."
GET_ORDER = ToolSchema(
    name="get_order",
    description="Look an order up.",
    parameters={"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
)
ENV = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with FakeOpenAI() as fake:
        yield fake
    assert fake.unexpected == 0, f"{fake.unexpected} request(s) more than the test expected"


def model_of(server: FakeOpenAI, **options: Any) -> OpenAIModel:
    return OpenAIModel("test-model", base_url=server.url, api_key="sk-test", **options)


def ask(*messages: Any, tools: tuple[ToolSchema, ...] = (GET_ORDER,), **fields: Any) -> ModelRequest:
    return ModelRequest(
        instructions=INSTRUCTIONS,
        messages=list(messages or [UserMessage(text="Where is #1234?")]),
        tools=tools,
        **fields,
    )


async def failure(model: OpenAIModel, request: ModelRequest | None = None) -> ModelError:
    with pytest.raises(ModelError) as caught:
        await model.respond(request or ask())
    return caught.value


# -- what goes on the wire ---------------------------------------------------------------------------------


async def test_a_first_turn_sends_the_instructions_as_the_system_message_and_the_tools(server: FakeOpenAI) -> None:
    server.queue(text("It shipped."))
    await model_of(server).respond(ask())

    [sent] = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.body == {
        "model": "test-model",
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": "Where is #1234?"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_order",
                    "description": "Look an order up.",
                    "parameters": GET_ORDER.parameters,
                },
            }
        ],
    }


async def test_tool_calls_and_results_go_back_as_assistant_tool_calls_and_tool_messages(server: FakeOpenAI) -> None:
    server.queue(text("Both found."))
    history = [
        UserMessage(text="Where are #1234 and #12?"),
        AssistantMessage(
            text="Looking both up.",
            tool_calls=(
                ToolCall(id="call_a", name="get_order", arguments={"order_id": "#1234"}),
                ToolCall(id="call_b", name="get_order", arguments='{"order_id": "#12"'),  # raw text, as it came
            ),
        ),
        ToolResultMessage(call_id="call_a", name="get_order", content='{"status": "shipped"}'),
        ToolResultMessage(call_id="call_b", name="get_order", content="There is no order #12.", is_error=True),
    ]
    await model_of(server).respond(ask(*history))

    messages = server.requests[0].body["messages"]
    assert messages[2] == {
        "role": "assistant",
        "content": "Looking both up.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "get_order", "arguments": '{"order_id": "#1234"}'},
            },
            {"id": "call_b", "type": "function", "function": {"name": "get_order", "arguments": '{"order_id": "#12"'}},
        ],
    }
    assert messages[3:] == [
        {"role": "tool", "tool_call_id": "call_a", "content": '{"status": "shipped"}'},
        {"role": "tool", "tool_call_id": "call_b", "content": "Error: There is no order #12."},
    ]


async def test_an_assistant_turn_of_calls_alone_has_null_content_and_no_tools_means_no_tools_key(
    server: FakeOpenAI,
) -> None:
    server.queue(text("Done."))
    call = ToolCall(id="call_a", name="get_order", arguments={"order_id": "#1234"})
    await model_of(server).respond(ask(UserMessage(text="hi"), AssistantMessage(tool_calls=(call,)), tools=()))

    body = server.requests[0].body
    assert body["messages"][2]["content"] is None
    assert "tools" not in body
    assert "max_tokens" not in body and "temperature" not in body and "response_format" not in body


async def test_output_limits_come_from_the_request_else_from_the_model(server: FakeOpenAI) -> None:
    server.queue(text("a"), text("b"))
    model = model_of(server, max_output_tokens=300, temperature=0.2)
    await model.respond(ask())
    await model.respond(ask(max_output_tokens=50, temperature=0.0))

    first, second = server.bodies()
    assert (first["max_tokens"], first["temperature"]) == (300, 0.2)  # compatible servers know max_tokens
    assert (second["max_tokens"], second["temperature"]) == (50, 0.0)


def test_openai_itself_gets_max_completion_tokens_which_its_reasoning_models_require() -> None:
    model = OpenAIModel("o4-mini", api_key="sk-test", max_output_tokens=100)
    params = model._params(ask(), "https://api.openai.com/v1")
    assert params["max_completion_tokens"] == 100 and "max_tokens" not in params


# -- what comes back ---------------------------------------------------------------------------------------


async def test_a_text_answer_with_its_usage_and_the_model_that_answered(server: FakeOpenAI) -> None:
    server.queue(text("It shipped on May 2.", used=usage(prompt=1200, completion=9, cached=1024)))
    response = await model_of(server).respond(ask())

    assert response.text == "It shipped on May 2."
    assert response.tool_calls == ()
    assert response.stop_reason == "end_turn"
    assert response.usage == Usage(input_tokens=1200, output_tokens=9, cache_read_tokens=1024)
    assert response.model == "test-model-2025-04-14"


async def test_parallel_tool_calls_keep_their_ids_order_and_raw_json_arguments(server: FakeOpenAI) -> None:
    server.queue(
        calls(
            function_call("call_DdmO9", "get_order", {"order_id": "#1234"}),
            function_call("call_QeLp2", "get_order", '{"order_id": "#1235"}'),
            content="Checking both.",
        )
    )
    response = await model_of(server).respond(ask())

    assert response.stop_reason == "tool_use"
    assert response.text == "Checking both."
    assert response.tool_calls == (
        ToolCall(id="call_DdmO9", name="get_order", arguments='{"order_id": "#1234"}'),
        ToolCall(id="call_QeLp2", name="get_order", arguments='{"order_id": "#1235"}'),
    )


async def test_malformed_json_arguments_reach_the_engine_untouched(server: FakeOpenAI) -> None:
    server.queue(calls(function_call("call_1", "get_order", '{"order_id": "#1234",')))
    [call] = (await model_of(server).respond(ask())).tool_calls
    assert call.arguments == '{"order_id": "#1234",'


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [("length", "max_tokens"), ("content_filter", "content_filter"), ("stop", "end_turn"), ("mystery", "other")],
)
async def test_finish_reasons_become_stop_reasons(server: FakeOpenAI, finish_reason: str, stop_reason: str) -> None:
    server.queue(text("The order is", finish_reason=finish_reason))
    assert (await model_of(server).respond(ask())).stop_reason == stop_reason


async def test_tool_calls_under_a_stop_finish_reason_are_still_tool_use(server: FakeOpenAI) -> None:
    server.queue(calls(function_call("call_1", "get_order", {"order_id": "#1"}), finish_reason="stop"))
    assert (await model_of(server).respond(ask())).stop_reason == "tool_use"


async def test_a_call_without_an_id_gets_one_so_that_its_result_can_quote_it(server: FakeOpenAI) -> None:
    server.queue(calls({"type": "function", "function": {"name": "get_order", "arguments": "{}"}}))
    [call] = (await model_of(server).respond(ask())).tool_calls
    assert call.id.startswith("call_1_")


async def test_a_refusal_is_the_answer_text(server: FakeOpenAI) -> None:
    server.queue(Reply(body=completion(content=None, refusal="I can't help with that.", finish_reason="stop")))
    assert (await model_of(server).respond(ask())).text == "I can't help with that."


async def test_a_completion_without_choices_is_a_model_error(server: FakeOpenAI) -> None:
    body = completion(content="x", finish_reason="stop") | {"choices": []}
    server.queue(Reply(body=body))
    error = await failure(model_of(server))
    assert "no choices" in error.message and not error.retryable


# -- failures ----------------------------------------------------------------------------------------------


async def test_a_rate_limit_is_retryable_and_carries_retry_after(server: FakeOpenAI) -> None:
    server.queue(rate_limited(**{"retry-after": "0"}), rate_limited(**{"retry-after-ms": "20"}), rate_limited())
    model = model_of(server)
    first, second, third = [await failure(model) for _ in range(3)]

    assert (first.kind, first.retryable, first.status_code, first.retry_after_s) == ("rate_limit", True, 429, 0.0)
    assert RATE_LIMITED in first.message
    assert second.retry_after_s == pytest.approx(0.02)
    assert third.retry_after_s is None
    assert len(server.requests) == 3  # the SDK's own retries are off: the engine retries, and journals it


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_retryable_with_the_providers_message(server: FakeOpenAI, status: int) -> None:
    server.queue(server_error(status, **{"retry-after": "1"}))
    error = await failure(model_of(server))
    assert (error.kind, error.retryable, error.status_code, error.retry_after_s) == ("server", True, status, 1.0)
    assert SERVER_ERROR in error.message and "openai:test-model" in error.message
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [401, 403])
async def test_an_authentication_error_is_final_and_names_the_variable(server: FakeOpenAI, status: int) -> None:
    server.queue(unauthorized() if status == 401 else error(403, "Project does not have access.", "permission"))
    error_ = await failure(model_of(server))
    assert (error_.kind, error_.retryable, error_.status_code) == ("auth", False, status)
    assert "OPENAI_API_KEY" in error_.message
    assert (BAD_KEY.rstrip(".") if status == 401 else "Project does not have access.") in error_.message


@pytest.mark.parametrize("status", [400, 404])
async def test_an_unknown_model_is_a_bad_request_in_the_servers_words(server: FakeOpenAI, status: int) -> None:
    server.queue(unknown_model("test-model", status))
    error = await failure(model_of(server))
    assert (error.kind, error.retryable, error.status_code) == ("bad_request", False, status)
    assert "The model `test-model` does not exist" in error.message


async def test_an_unprocessable_request_is_a_bad_request(server: FakeOpenAI) -> None:
    server.queue(error(422, "messages: field required", "invalid_request_error"))
    error_ = await failure(model_of(server))
    assert (error_.kind, error_.retryable) == ("bad_request", False)
    assert "messages: field required" in error_.message


async def test_no_server_is_a_retryable_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    model = OpenAIModel("test-model", base_url=f"http://127.0.0.1:{port}/v1")
    error = await failure(model)
    assert (error.kind, error.retryable) == ("connection", True)
    assert f"127.0.0.1:{port}" in error.message and "OPENAI_BASE_URL" in error.message


async def test_a_server_that_does_not_answer_in_time_is_a_retryable_timeout(server: FakeOpenAI) -> None:
    server.queue(Reply(stall=True))
    error = await failure(model_of(server, timeout_s=0.2))
    assert (error.kind, error.retryable) == ("timeout", True)
    assert "0.2s" in error.message


# -- keys and addresses ------------------------------------------------------------------------------------


async def test_openai_without_a_key_fails_at_once_naming_both_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    model = resolve_model("openai:gpt-4.1-mini")  # building it needs no key
    assert model.name == "openai:gpt-4.1-mini"

    error = await failure(model)  # type: ignore[arg-type]
    assert (error.kind, error.retryable) == ("auth", False)
    assert "set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server)" in error.message


async def test_the_environment_sets_the_address_and_the_key(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    server.queue(text("ok"))
    model = OpenAIModel("test-model")
    await model.respond(ask())

    assert model.base_url == server.url
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


async def test_a_local_server_without_a_key_gets_a_placeholder(server: FakeOpenAI) -> None:
    server.queue(text("ok"))
    await OpenAIModel("llama3.2", base_url=server.url).respond(ask())
    assert server.requests[0].headers["authorization"] == "Bearer no-key-needed"


def test_a_model_serves_runs_in_successive_event_loops(server: FakeOpenAI) -> None:
    server.queue(text("one"), text("two"))
    model = model_of(server)
    assert asyncio.run(model.respond(ask())).text == "one"
    assert asyncio.run(model.respond(ask())).text == "two"  # run_sync makes a loop per run


def test_a_missing_sdk_is_a_config_error_that_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)  # what `import openai` meets when it is not installed
    monkeypatch.delitem(sys.modules, "agentkeel.models.openai_provider")
    with pytest.raises(ConfigError, match=r"pip install 'agentkeel\[openai\]'"):
        resolve_model("openai:gpt-4.1-mini")


@pytest.mark.parametrize(
    ("options", "wrong"), [({"timeout_s": 0}, "timeout_s"), ({"structured_output": "yes"}, "structured_output")]
)
def test_bad_settings_are_config_errors(options: dict[str, Any], wrong: str) -> None:
    with pytest.raises(ConfigError, match=wrong):
        OpenAIModel("gpt-4.1-mini", **options)


# -- streaming ---------------------------------------------------------------------------------------------


async def test_a_streamed_answer_is_assembled_with_its_usage(server: FakeOpenAI) -> None:
    server.queue(streamed_text("It ship", "ped on ", "May 2.", used=usage(prompt=80, completion=7, cached=64)))
    response = await model_of(server, stream=True).respond(ask())

    assert response.text == "It shipped on May 2."
    assert response.stop_reason == "end_turn"
    assert response.usage == Usage(input_tokens=80, output_tokens=7, cache_read_tokens=64)
    assert response.model == "test-model-2025-04-14"
    body = server.requests[0].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_streamed_parallel_tool_calls_are_assembled_by_index(server: FakeOpenAI) -> None:
    server.queue(
        streamed_calls(
            (0, "call_A", "get_order", ""),
            (0, "", "", '{"order'),
            (1, "call_B", "get_order", '{"order_id"'),
            (0, "", "", '_id": "#1234"}'),
            (1, "", "", ': "#1235"'),
            (1, "", "", "}"),
            content="Checking.",
        )
    )
    response = await model_of(server, stream=True).respond(ask())

    assert response.stop_reason == "tool_use"
    assert response.text == "Checking."
    assert response.tool_calls == (
        ToolCall(id="call_A", name="get_order", arguments='{"order_id": "#1234"}'),
        ToolCall(id="call_B", name="get_order", arguments='{"order_id": "#1235"}'),
    )


async def test_a_streamed_max_tokens_stop(server: FakeOpenAI) -> None:
    server.queue(streamed_text("The order", finish_reason="length"))
    assert (await model_of(server, stream=True).respond(ask())).stop_reason == "max_tokens"


async def test_a_stream_cut_before_its_finish_is_a_retryable_error(server: FakeOpenAI) -> None:
    server.queue(Reply(chunks=[chunk({"role": "assistant", "content": "It ship"})], done=False))
    error = await failure(model_of(server, stream=True))
    assert (error.kind, error.retryable) == ("connection", True)


async def test_an_error_event_inside_a_stream_is_a_retryable_server_error(server: FakeOpenAI) -> None:
    server.queue(Reply(chunks=[chunk({"content": "It"}), {"error": {"message": "overloaded", "type": "server_error"}}]))
    error = await failure(model_of(server, stream=True))
    assert (error.kind, error.retryable) == ("server", True)
    assert "overloaded" in error.message


async def test_a_streamed_rate_limit_is_still_a_rate_limit(server: FakeOpenAI) -> None:
    server.queue(rate_limited(**{"retry-after": "0"}))
    error = await failure(model_of(server, stream=True))
    assert (error.kind, error.retry_after_s) == ("rate_limit", 0.0)


# -- structured output -------------------------------------------------------------------------------------

ANSWER = {
    "title": "Order status",
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "status": {"type": "string"}},
    "required": ["order_id", "status"],
    "additionalProperties": False,
}


async def test_an_output_schema_is_sent_as_a_json_schema_response_format(server: FakeOpenAI) -> None:
    server.queue(text('{"order_id": "#1234", "status": "shipped"}'), text("{}"))
    model = model_of(server)
    response = await model.respond(ask(output_schema=ANSWER))
    loose = {"type": "object", "properties": {"status": {"type": "string"}}}
    await model.respond(ask(output_schema=loose))

    assert response.text == '{"order_id": "#1234", "status": "shipped"}'
    strict, lenient = (body["response_format"] for body in server.bodies())
    assert strict == {"type": "json_schema", "json_schema": {"name": "Order_status", "schema": ANSWER, "strict": True}}
    assert lenient["json_schema"]["strict"] is False  # strict mode would refuse an open schema
    assert lenient["json_schema"]["name"] == "output"


async def test_structured_output_can_be_json_mode_or_off(server: FakeOpenAI) -> None:
    server.queue(text("{}"), text("{}"))
    await model_of(server, structured_output="json_object").respond(ask(output_schema=ANSWER))
    await model_of(server, structured_output="off").respond(ask(output_schema=ANSWER))

    json_mode, off = server.bodies()
    assert json_mode["response_format"] == {"type": "json_object"}
    assert "response_format" not in off


async def test_a_server_that_refuses_structured_output_says_so(server: FakeOpenAI) -> None:
    server.queue(error(400, "Unrecognized request argument supplied: response_format", "invalid_request_error"))
    error_ = await failure(model_of(server), ask(output_schema=ANSWER))
    assert (error_.kind, error_.retryable) == ("bad_request", False)
    assert "does not support structured output" in error_.message
    assert "Unrecognized request argument supplied: response_format" in error_.message
    assert "structured_output='off'" in error_.message
