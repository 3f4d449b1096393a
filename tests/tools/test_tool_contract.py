"""``@tool``: the schema a model sees, the contract's defaults, and the setup mistakes refused with ConfigError."""

# No ``from __future__ import annotations`` here: the tools below are defined inside tests, with real annotations.

import asyncio
from typing import Annotated, Any, Literal

import pytest
from pydantic import BaseModel, Field

from agentkeel import Agent, ConfigError, RetryPolicy, ScriptedModel, Tool, ToolContext, tool


def test_a_plain_decorator_makes_a_read_tool_with_a_schema_from_the_signature() -> None:
    @tool
    def get_order_status(order_id: str, include_items: bool = False, limit: int = 10) -> dict[str, Any]:
        """Look up an order's status."""
        return {}

    assert isinstance(get_order_status, Tool)
    assert get_order_status.name == "get_order_status"
    assert get_order_status.description == "Look up an order's status."
    assert (get_order_status.effect, get_order_status.idempotent, get_order_status.safe_to_repeat) == (
        "read",
        True,
        True,
    )
    assert get_order_status.is_async is False and get_order_status.takes_ctx is False
    schema = get_order_status.schema
    assert schema.name == "get_order_status"
    assert schema.parameters == {
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "include_items": {"type": "boolean", "default": False},
            "limit": {"type": "integer", "default": 10},
        },
        "required": ["order_id"],
        "additionalProperties": False,
    }


def test_google_style_args_describe_the_parameters() -> None:
    @tool
    def refund(order_id: str, amount_usd: float) -> str:
        """Refund part or all of an order.

        Args:
            order_id: The order number, like #1234.
            amount_usd (float): How much to refund, in US dollars;
                never more than the order's total.

        Returns:
            The refund's id.
        """
        return ""

    properties = refund.schema.parameters["properties"]
    assert properties["order_id"]["description"] == "The order number, like #1234."
    assert properties["amount_usd"]["description"] == (
        "How much to refund, in US dollars; never more than the order's total."
    )
    assert refund.description == "Refund part or all of an order."
    assert "refund's id" not in refund.description


def test_sphinx_style_params_describe_the_parameters() -> None:
    @tool
    def escalate(ticket: str, priority: int) -> str:
        """Hand a ticket to a person.

        :param ticket: The ticket's id.
        :param int priority: 1 (urgent) to 4.
        :returns: the escalation's id
        """
        return ""

    properties = escalate.schema.parameters["properties"]
    assert properties["ticket"]["description"] == "The ticket's id."
    assert properties["priority"]["description"] == "1 (urgent) to 4."
    assert escalate.description == "Hand a ticket to a person."


def test_annotated_field_constraints_reach_the_schema() -> None:
    @tool
    def lookup(
        order_id: Annotated[str, Field(pattern=r"^#\d{4}$", examples=["#1234"], description="The order number.")],
        quantity: Annotated[int, Field(ge=1, le=99)] = 1,
        kind: Literal["refund", "exchange"] = "refund",
    ) -> str:
        """Look up."""
        return ""

    properties = lookup.schema.parameters["properties"]
    assert properties["order_id"]["pattern"] == r"^#\d{4}$"
    assert properties["order_id"]["examples"] == ["#1234"]
    assert properties["order_id"]["description"] == "The order number."
    assert (properties["quantity"]["minimum"], properties["quantity"]["maximum"]) == (1, 99)
    assert properties["kind"]["enum"] == ["refund", "exchange"]


def test_pydantic_models_as_parameters_are_described_without_titles() -> None:
    class Address(BaseModel):
        street: str
        city: str

    @tool
    def ship(address: Address) -> str:
        """Ship."""
        return ""

    parameters = ship.schema.parameters
    assert "title" not in parameters
    assert all("title" not in definition for definition in parameters["$defs"].values())
    assert parameters["$defs"]["Address"]["properties"]["city"] == {"type": "string"}


def test_the_context_parameter_is_not_shown_to_the_model() -> None:
    @tool(effect="write", idempotent=True)
    async def issue_refund(ctx: ToolContext, order_id: str) -> str:
        """Refund."""
        return ctx.idempotency_key

    assert issue_refund.takes_ctx is True
    assert issue_refund.is_async is True
    assert list(issue_refund.schema.parameters["properties"]) == ["order_id"]
    assert issue_refund.schema.parameters["required"] == ["order_id"]


def test_an_untyped_context_parameter_is_fine_but_ctx_elsewhere_is_a_parameter() -> None:
    @tool
    def first(ctx, query: str) -> str:  # type: ignore[no-untyped-def]
        return query

    assert first.takes_ctx and list(first.schema.parameters["properties"]) == ["query"]

    @tool
    def second(query: str, ctx: str) -> str:
        return query

    assert second.takes_ctx is False
    assert list(second.schema.parameters["properties"]) == ["query", "ctx"]


def test_a_tool_without_a_docstring_is_described_by_its_name() -> None:
    @tool
    def check_stock(sku: str) -> int:
        return 0

    assert check_stock.description == "check stock"


def test_the_decorator_settings_override_name_and_description_and_set_the_contract() -> None:
    @tool(
        name="refund-v2",
        description="Refund an order.",
        effect="write",
        timeout=5,
        retries=2,
        retry_on=(ConnectionError,),
        backoff=0.5,
    )
    def refund(order_id: str) -> str:
        """Ignored."""
        return order_id

    assert (refund.name, refund.description, refund.schema.name) == ("refund-v2", "Refund an order.", "refund-v2")
    assert refund.timeout_s == 5
    assert refund.retry == RetryPolicy(retries=2, on=(ConnectionError,), backoff_s=0.5)
    assert refund("#1") == "#1"  # a tool stays callable


@pytest.mark.parametrize(("effect", "idempotent"), [("read", True), ("write", False)])
def test_idempotent_defaults_follow_the_effect(effect: Literal["read", "write"], idempotent: bool) -> None:
    @tool(effect=effect)
    def act(x: int) -> int:
        return x

    assert act.idempotent is idempotent
    assert act.safe_to_repeat is idempotent


def test_a_write_tool_declared_idempotent_is_safe_to_repeat() -> None:
    @tool(effect="write", idempotent=True)
    def act(x: int) -> int:
        return x

    assert act.safe_to_repeat


def test_the_retry_backoff_doubles_up_to_its_cap() -> None:
    policy = RetryPolicy(retries=5, backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 3.0]


def test_reconcile_registers_a_hook_and_returns_the_function() -> None:
    @tool(effect="write")
    def charge(amount: int) -> str:
        return "ok"

    @charge.reconcile
    def charged(amount: int) -> None:
        return None

    assert charge.reconcile_fn is charged


def test_a_sync_tool_and_an_async_tool_are_told_apart() -> None:
    @tool
    async def fetch(url: str) -> str:
        await asyncio.sleep(0)
        return url

    assert fetch.is_async


# -- setup mistakes -------------------------------------------------------------------------------------------


def test_an_untyped_parameter_is_refused_with_an_example() -> None:
    def lookup(order_id):  # type: ignore[no-untyped-def]
        return order_id

    with pytest.raises(ConfigError, match=r"parameter 'order_id' has no type annotation.*`order_id: str`"):
        tool(lookup)


@pytest.mark.parametrize("signature", ["*args: str", "**kwargs: str", "x: int, *rest: int"])
def test_variadic_parameters_are_refused(signature: str) -> None:
    namespace: dict[str, Any] = {}
    exec(f"def fn({signature}) -> None: pass", namespace)
    with pytest.raises(ConfigError, match="cannot be described to a model"):
        tool(namespace["fn"])


def test_positional_only_parameters_are_refused() -> None:
    def fn(x: int, /) -> int:
        return x

    with pytest.raises(ConfigError, match="positional-only"):
        tool(fn)


@pytest.mark.parametrize("bad", ["get order", "naïve", "x" * 65, "a.b", "<lambda>"])
def test_a_name_providers_refuse_is_refused(bad: str) -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="letters, digits, _ or -"):
        tool(name=bad)(fn)


def test_a_lambda_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="'<lambda>' is not accepted"):
        tool(lambda: None)


def test_a_bad_effect_is_refused() -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="effect must be 'read' or 'write', not 'delete'"):
        tool(effect="delete")(fn)  # type: ignore[call-overload]


def test_negative_retries_are_refused() -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="retries must be 0 or more, not -1"):
        tool(retries=-1)(fn)


@pytest.mark.parametrize("timeout", [0, -1.5])
def test_a_timeout_that_is_not_positive_is_refused(timeout: float) -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="timeout must be a positive number"):
        tool(timeout=timeout)(fn)


def test_retry_on_must_hold_exception_types() -> None:
    def fn(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="retry_on must hold exception types"):
        tool(retries=1, retry_on=("ConnectionError",))(fn)  # type: ignore[arg-type]


def test_decorating_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="already a tool; apply @tool once"):

        @tool
        @tool
        def twice(x: int) -> int:
            return x


def test_a_non_callable_is_refused() -> None:
    with pytest.raises(ConfigError, match="expects a function"):
        tool(42)  # type: ignore[call-overload]


def test_a_type_that_json_schema_cannot_describe_is_refused() -> None:
    def fn(x: Any, handle: asyncio.Event) -> None:
        return None

    with pytest.raises(ConfigError, match="tool 'fn'"):
        tool(fn)


def test_a_plain_function_passed_to_an_agent_is_refused() -> None:
    def get_order_status(order_id: str) -> str:
        return order_id

    with pytest.raises(ConfigError, match="get_order_status is not a tool; decorate it with @tool"):
        Agent(name="a", model=ScriptedModel(["hi"]), tools=[get_order_status], store="memory://")  # type: ignore[list-item]


def test_a_single_tool_instead_of_a_list_is_refused() -> None:
    @tool
    def lookup(order_id: str) -> str:
        return order_id

    with pytest.raises(ConfigError, match="tools must be a list"):
        Agent(name="a", model=ScriptedModel(["hi"]), tools=lookup, store="memory://")  # type: ignore[arg-type]


def test_two_tools_with_one_name_are_refused() -> None:
    @tool
    def lookup(order_id: str) -> str:
        return order_id

    def lookup_again(order_id: str) -> str:
        return order_id

    other = tool(name="lookup")(lookup_again)

    with pytest.raises(ConfigError, match="two tools are named 'lookup'"):
        Agent(name="a", model=ScriptedModel(["hi"]), tools=[lookup, other], store="memory://")


def test_inline_is_for_sync_tools_only() -> None:
    async def lookup(order_id: str) -> str:
        return order_id

    with pytest.raises(ConfigError, match="inline=True is for sync tools"):
        tool(inline=True)(lookup)


def test_an_inline_tool_cannot_declare_a_timeout() -> None:
    def lookup(order_id: str) -> str:
        return order_id

    with pytest.raises(ConfigError, match="an inline tool cannot be timed out"):
        tool(inline=True, timeout=1.0)(lookup)
    assert tool(inline=True)(lookup).inline
    assert not tool(lookup).inline
