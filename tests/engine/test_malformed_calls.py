"""No malformed tool call from a model crashes the engine.

A scripted model emits generated calls (unknown names, invalid JSON, JSON that is not an object, wrong types,
missing and extra fields, huge strings, nested structures) mixed with valid ones, then answers. Every run
completes, every bad call comes back to the model as an error result, every valid call runs, and nothing is
raised.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from agentkeel import (
    Agent,
    MemoryStore,
    ModelResponse,
    ScriptedModel,
    SQLiteStore,
    Store,
    ToolCall,
    ToolResultMessage,
    reply,
    tool,
)

OrderId = Annotated[str, Field(pattern=r"^#\d{4}$", examples=["#1234"])]
Amount = Annotated[float, Field(gt=0, le=500)]


@dataclass
class Ran:
    calls: int = 0


RAN = Ran()


@tool
def get_order(order_id: OrderId, verbose: bool = False) -> dict[str, Any]:
    """Look up an order."""
    RAN.calls += 1
    return {"order_id": order_id, "status": "shipped"}


@tool(effect="write", idempotent=True)
async def refund(order_id: OrderId, amount_usd: Amount, items: list[int] | None = None) -> str:
    """Refund an order."""
    RAN.calls += 1
    return f"refunded {amount_usd}"


TOOLS = {"get_order": get_order, "refund": refund}

# -- generated calls: (name, arguments, is_bad) ----------------------------------------------------------------

json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
huge_text = st.builds(lambda piece, times: piece * times, st.text(min_size=1, max_size=10), st.integers(1, 10_000))
order_ids = st.from_regex(r"\A#[0-9]{4}\Z")
amounts = st.floats(min_value=0.01, max_value=500)
not_a_string = json_values.filter(lambda v: not isinstance(v, str))
not_a_number = (st.text(max_size=20).filter(lambda s: not _is_number(s)) | st.none() | st.lists(json_leaves)).filter(
    lambda v: not isinstance(v, bool)
)
bad_order_ids = st.text(max_size=30).filter(lambda s: not _valid_order_id(s)) | huge_text.filter(
    lambda s: not _valid_order_id(s)
)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _valid_order_id(text: str) -> bool:
    # pydantic's regex engine reads \d as any Unicode decimal digit, as str.isdecimal does
    return len(text) == 5 and text[0] == "#" and text[1:].isdecimal()


def _not_an_object(text: str) -> bool:
    try:
        return not isinstance(json.loads(text), dict) if text.strip() else False
    except (ValueError, RecursionError):
        return True


@st.composite
def valid_call(draw: st.DrawFn) -> tuple[str, dict[str, Any] | str, bool]:
    if draw(st.booleans()):
        arguments: dict[str, Any] = {"order_id": draw(order_ids)}
        if draw(st.booleans()):
            arguments["verbose"] = draw(st.booleans())
        name = "get_order"
    else:
        arguments = {"order_id": draw(order_ids), "amount_usd": draw(amounts)}
        if draw(st.booleans()):
            arguments["items"] = draw(st.lists(st.integers(), max_size=5))
        name = "refund"
    as_text = draw(st.booleans())
    return name, json.dumps(arguments) if as_text else arguments, False


@st.composite
def bad_call(draw: st.DrawFn) -> tuple[str, dict[str, Any] | str, bool]:
    kind = draw(
        st.sampled_from(
            [
                "unknown",
                "invalid_json",
                "not_object",
                "missing",
                "extra",
                "wrong_type",
                "pattern",
                "huge",
                "nested",
                "range",
            ]
        )
    )
    name = draw(st.sampled_from(sorted(TOOLS)))
    valid: dict[str, Any] = {"order_id": draw(order_ids), "amount_usd": draw(amounts)}
    if name == "get_order":
        del valid["amount_usd"]
    arguments: dict[str, Any] | str
    if kind == "unknown":
        name = draw((st.text(max_size=40) | huge_text).filter(lambda n: n not in TOOLS))
        arguments = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3))
    elif kind == "invalid_json":
        arguments = draw(st.text(max_size=200).filter(_not_an_object))
    elif kind == "not_object":
        arguments = json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict))))
    elif kind == "missing":
        dropped = draw(st.sampled_from(sorted(valid)))
        arguments = {k: v for k, v in valid.items() if k != dropped}
    elif kind == "extra":
        extra = draw(
            st.text(min_size=1, max_size=12).filter(lambda k: k not in ("order_id", "amount_usd", "items", "verbose"))
        )
        arguments = {**valid, extra: draw(json_values)}
    elif kind == "wrong_type":
        field = draw(st.sampled_from(sorted(valid)))
        arguments = {**valid, field: draw(not_a_string if field == "order_id" else not_a_number)}
    elif kind == "pattern":
        arguments = {**valid, "order_id": draw(bad_order_ids)}
    elif kind == "huge":
        arguments = {**valid, "order_id": draw(huge_text.filter(lambda s: not _valid_order_id(s)))}
    elif kind == "nested":
        arguments = {
            **valid,
            "order_id": draw(st.lists(json_values, min_size=1) | st.dictionaries(st.text(), json_values, min_size=1)),
        }
    else:  # out of range
        name = "refund"
        bad_amount = draw(
            st.floats(max_value=0) | st.floats(min_value=500.0001) | st.sampled_from([float("inf"), -1e308])
        )
        arguments = {"order_id": draw(order_ids), "amount_usd": bad_amount}
    if kind != "invalid_json" and isinstance(arguments, dict) and draw(st.booleans()):
        arguments = json.dumps(arguments)  # the same call as a provider's raw JSON text
    return name, arguments, True


turns = st.lists(st.lists(bad_call() | valid_call(), min_size=1, max_size=4), min_size=1, max_size=3)


def script(planned: list[list[tuple[str, dict[str, Any] | str, bool]]]) -> list[ModelResponse | str]:
    responses: list[ModelResponse | str] = []
    for t, turn in enumerate(planned):
        tool_calls = tuple(
            ToolCall(id=f"c{t}-{i}", name=name, arguments=arguments) for i, (name, arguments, _) in enumerate(turn)
        )
        responses.append(ModelResponse(tool_calls=tool_calls, stop_reason="tool_use"))
    responses.append(reply("I could not do everything you asked."))
    return responses


async def drive(store: Store, planned: list[list[tuple[str, dict[str, Any] | str, bool]]]) -> None:
    RAN.calls = 0
    agent = Agent(name="fuzz", model=ScriptedModel(script(planned)), tools=[get_order, refund], store=store)
    result = await agent.run("Handle this ticket.")
    assert (result.status, result.reason) == ("completed", ""), result.detail

    state = await agent.state(result.run_id)
    results = {m.call_id: m for m in state.messages if isinstance(m, ToolResultMessage)}
    expected_errors = 0
    for t, turn in enumerate(planned):
        for i, (name, arguments, bad) in enumerate(turn):
            message = results[f"c{t}-{i}"]
            assert message.is_error is bad, (name, str(arguments)[:200], message.content[:300])
            assert len(message.content) < 2_000  # a bad value is quoted, never echoed whole
            expected_errors += bad
    assert RAN.calls == sum(not bad for turn in planned for _, _, bad in turn)
    assert (result.tool_calls, result.tool_errors) == (sum(len(turn) for turn in planned), expected_errors)
    assert result.steps == len(planned) + 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(planned=turns)
def test_no_malformed_call_crashes_a_run_in_memory(planned: list[list[tuple[str, dict[str, Any] | str, bool]]]) -> None:
    asyncio.run(drive(MemoryStore(), planned))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
@given(planned=turns)
def test_no_malformed_call_crashes_a_run_on_sqlite(
    tmp_path: Path, planned: list[list[tuple[str, dict[str, Any] | str, bool]]]
) -> None:
    async def scenario() -> None:
        store = SQLiteStore(tmp_path / "fuzz.db", synchronous="off")
        try:
            await drive(store, planned)
        finally:
            await store.close()

    asyncio.run(scenario())
