"""``validate_call``: whatever the model sends, the answer is validated arguments or a message it can act on."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from agentkeel import Tool, ToolCall, tool
from agentkeel.core.codec import decode_event, encode_event
from agentkeel.core.events import ToolCallStarted, ToolFailure
from agentkeel.tools.validate import MAX_DEPTH, MAX_ECHO, ValidCall, validate_call

OrderId = Annotated[str, Field(pattern=r"^#\d{4}$", examples=["#1234"], description="The order number.")]


class Item(BaseModel):
    sku: str
    quantity: int


@tool
def get_order_status(order_id: OrderId) -> dict[str, str]:
    """Look up an order."""
    return {"order_id": order_id}


@tool(effect="write")
def issue_refund(order_id: OrderId, amount_usd: Annotated[float, Field(gt=0, le=500)], reason: str = "") -> str:
    """Refund an order."""
    return "ok"


@tool
def add_items(items: list[Item], mode: Literal["append", "replace"] = "append") -> int:
    """Add items."""
    return len(items)


@tool
def ping() -> str:
    """No arguments."""
    return "pong"


TOOLS: dict[str, Tool] = {t.name: t for t in (get_order_status, issue_refund, add_items, ping)}


def fail(name: str, arguments: object) -> ToolFailure:
    checked = validate_call(ToolCall(id="c1", name=name, arguments=arguments), TOOLS)  # type: ignore[arg-type]
    assert isinstance(checked, ToolFailure), checked
    return checked


def test_a_valid_call_gives_validated_arguments_and_their_json() -> None:
    checked = validate_call(
        ToolCall(id="c1", name="issue_refund", arguments={"order_id": "#1234", "amount_usd": "12.5"}), TOOLS
    )
    assert isinstance(checked, ValidCall)
    assert checked.tool is issue_refund
    assert checked.arguments.amount_usd == 12.5  # type: ignore[attr-defined]
    assert checked.json_arguments == {"order_id": "#1234", "amount_usd": 12.5, "reason": ""}


def test_arguments_as_json_text_are_parsed() -> None:
    checked = validate_call(ToolCall(id="c1", name="get_order_status", arguments='{"order_id": "#1234"}'), TOOLS)
    assert isinstance(checked, ValidCall)
    assert checked.json_arguments == {"order_id": "#1234"}


@pytest.mark.parametrize("empty", ["", "   ", {}])
def test_empty_arguments_suit_a_tool_without_parameters(empty: object) -> None:
    checked = validate_call(ToolCall(id="c1", name="ping", arguments=empty), TOOLS)  # type: ignore[arg-type]
    assert isinstance(checked, ValidCall)
    assert checked.json_arguments == {}


def test_nested_models_are_validated_and_dumped_as_json() -> None:
    arguments = {"items": [{"sku": "A", "quantity": "2"}], "mode": "replace"}
    checked = validate_call(ToolCall(id="c1", name="add_items", arguments=arguments), TOOLS)
    assert isinstance(checked, ValidCall)
    assert checked.json_arguments == {"items": [{"sku": "A", "quantity": 2}], "mode": "replace"}


def test_an_unknown_tool_lists_the_valid_ones() -> None:
    failure = fail("get_order", {"order_id": "#1234"})
    assert failure.kind == "unknown_tool"
    assert failure.message == (
        'There is no tool named "get_order". Valid tools: add_items, get_order_status, issue_refund, ping. '
        "Call one of them by its exact name."
    )


def test_an_unknown_tool_with_no_tools_at_all_says_to_answer_without_tools() -> None:
    checked = validate_call(ToolCall(id="c1", name="x", arguments={}), {})
    assert isinstance(checked, ToolFailure)
    assert "(none: answer without tools)" in checked.message


def test_invalid_json_says_so_and_lists_the_fields() -> None:
    failure = fail("issue_refund", '{"order_id": "#1234", "amount_usd": ')
    assert failure.kind == "invalid_arguments"
    assert failure.message.startswith("The arguments for issue_refund are not valid JSON (")
    assert (
        'send one JSON object with the fields order_id (a string matching the pattern ^#\\d{4}$, for example "#1234")'
        in failure.message
    )
    assert "amount_usd (a number > 0 and <= 500)" in failure.message
    assert "reason (a string)" in failure.message


@pytest.mark.parametrize(
    ("arguments", "shown"),
    [("[1, 2]", "list [1, 2]"), ('"#1234"', 'str "#1234"'), ("42", "int 42"), ("null", "NoneType null")],
)
def test_json_that_is_not_an_object_is_refused(arguments: str, shown: str) -> None:
    failure = fail("get_order_status", arguments)
    assert failure.kind == "invalid_arguments"
    assert "must be a JSON object with the fields order_id" in failure.message
    assert f"not {shown}." in failure.message


def test_a_missing_field_names_it_and_what_is_expected() -> None:
    failure = fail("issue_refund", {"order_id": "#1234"})
    assert failure.kind == "invalid_arguments"
    assert failure.message == (
        "Invalid arguments for issue_refund: amount_usd is missing; expected a number > 0 and <= 500. "
        "Fix them and call issue_refund again."
    )


def test_an_extra_field_names_the_real_parameters() -> None:
    failure = fail("issue_refund", {"order_id": "#1234", "amount_usd": 5, "amount": 5})
    assert "amount is not a parameter of issue_refund (its parameters: order_id, amount_usd, reason)" in (
        failure.message
    )


def test_a_wrong_type_shows_what_was_given_and_what_is_expected() -> None:
    failure = fail("issue_refund", {"order_id": "#1234", "amount_usd": "five dollars"})
    assert 'amount_usd was "five dollars"; expected a number > 0 and <= 500' in failure.message


def test_a_constraint_violation_shows_the_limit() -> None:
    failure = fail("issue_refund", {"order_id": "#1234", "amount_usd": 900})
    assert "amount_usd was 900; expected a number > 0 and <= 500" in failure.message


def test_a_pattern_mismatch_names_the_field_the_value_the_pattern_and_an_example() -> None:
    failure = fail("get_order_status", {"order_id": "1234"})
    assert failure.message == (
        'Invalid arguments for get_order_status: order_id was "1234"; expected a string matching the pattern '
        '^#\\d{4}$, for example "#1234" (The order number). Fix them and call get_order_status again.'
    )


def test_an_enum_lists_the_choices() -> None:
    failure = fail("add_items", {"items": [], "mode": "merge"})
    assert 'mode was "merge"; expected one of "append", "replace"' in failure.message


def test_a_nested_error_gives_its_path() -> None:
    failure = fail("add_items", {"items": [{"sku": "A", "quantity": "many"}]})
    assert 'items.0.quantity was "many"; expected input should be a valid integer' in failure.message


def test_several_problems_are_reported_together() -> None:
    failure = fail("issue_refund", {"order_id": 1234, "bogus": True})
    assert "order_id was 1234" in failure.message
    assert "amount_usd is missing" in failure.message
    assert "bogus is not a parameter" in failure.message


def test_many_problems_are_capped_with_a_count() -> None:
    items = [{"sku": i, "quantity": "x"} for i in range(10)]  # 20 errors
    failure = fail("add_items", {"items": items})
    assert failure.message.count(" was ") == 8
    assert "and 12 more" in failure.message


def test_huge_strings_are_truncated_in_the_echo() -> None:
    huge = "9" * 100_000
    failure = fail("get_order_status", {"order_id": huge})
    assert len(failure.message) < 600
    assert f"{'9' * (MAX_ECHO - 1)}... (100002 characters)" in failure.message

    unknown = fail("x" * 100_000, {})
    assert len(unknown.message) < 400
    assert "(100002 characters)" in unknown.message

    not_json = fail("get_order_status", "{" + "a" * 100_000)
    assert len(not_json.message) < 600


def nested(depth: int) -> dict[str, object]:
    value: object = 1
    for _ in range(depth):
        value = {"k": value}
    return {"data": value}


@tool
def save(data: dict[str, Any]) -> str:
    """Keep any JSON object."""
    return "ok"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 5_000])
@pytest.mark.parametrize("form", ["dict", "text"])
def test_arguments_nested_too_deeply_are_refused_not_raised(depth: int, form: str) -> None:
    arguments = nested(depth) if form == "dict" else json.dumps(nested(min(depth, 900)))
    for name, tools in (("save", {"save": save}), ("add_items", TOOLS)):
        checked = validate_call(ToolCall(id="c1", name=name, arguments=arguments), tools)
        assert isinstance(checked, ToolFailure)
        assert checked.kind == "invalid_arguments"
        assert len(checked.message) < 500


def test_arguments_nested_within_the_limit_are_valid_and_survive_the_journal() -> None:
    checked = validate_call(ToolCall(id="c1", name="save", arguments=nested(MAX_DEPTH - 1)), {"save": save})
    assert isinstance(checked, ValidCall)
    event = ToolCallStarted(
        at=1.0, call="1.1", tool_call_id="c1", name="save", arguments=checked.json_arguments, idempotency_key="k"
    )
    assert decode_event(encode_event(event)) == event


def test_json_nested_past_the_parser_limit_is_refused() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    failure = fail("get_order_status", deep)
    assert failure.kind == "invalid_arguments"
    assert "not valid JSON" in failure.message
