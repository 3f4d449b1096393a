"""Budgets: each limit refuses the call that would cross it and not the one before; figures come from the journal;
the prompt estimate matches what the scripted model reports and costs O(new messages) a step."""

from __future__ import annotations

from typing import Any

import pytest

from agentkeel import ConfigError, ModelResponse, Price, ScriptedModel, ToolCall, Usage
from agentkeel.core.budget import (
    Budget,
    Exceeded,
    Spend,
    before_model_call,
    before_tool_call,
    estimate_model_call,
)
from agentkeel.core.events import Event, ModelResponded, RunStarted, ToolCallFinished, ToolCallStarted
from agentkeel.core.messages import (
    AssistantMessage,
    Conversation,
    Message,
    ModelRequest,
    ToolResultMessage,
    ToolSchema,
    UserMessage,
)
from agentkeel.core.state import replay
from agentkeel.core.tokens import estimate_input_tokens
from agentkeel.models.scripted import call, reply

DOLLAR_A_TOKEN = Price(input=1_000_000.0, output=2_000_000.0)
"""$1 an input token, $2 an output token: costs are whole numbers, exact in floating point."""


def model_call(
    budget: Budget, spent: Spend, *, input_tokens: int = 10, max_output: int | None = 10, price: Any = None
) -> Exceeded | None:
    return before_model_call(budget, spent, input_tokens=input_tokens, max_output_tokens=max_output, price=price)


# -- each limit at its boundary -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["steps", "model_calls"])
def test_model_call_n_plus_1_is_refused_when_the_limit_is_n(which: str) -> None:
    budget = Budget(**{which: 3})
    assert model_call(budget, Spend(**{which: 2})) is None
    refused = model_call(budget, Spend(**{which: 3}))
    assert refused == Exceeded(which=which, limit=3, spent=3, needed=1)
    assert refused.reason == f"budget_exceeded:{which}"


def test_tool_call_n_plus_1_is_refused_when_the_limit_is_n() -> None:
    budget = Budget(tool_calls=5)
    assert before_tool_call(budget, Spend(tool_calls=4), "search") is None
    refused = before_tool_call(budget, Spend(tool_calls=5), "search")
    assert refused == Exceeded(which="tool_calls", limit=5, spent=5, needed=1, call="call to search")


def test_a_per_tool_limit_stops_that_tool_and_leaves_the_others_free() -> None:
    budget = Budget(per_tool={"search": 2, "delete": 0})
    spent = Spend(tool_calls=7, per_tool={"search": 2, "lookup": 5})
    assert before_tool_call(budget, Spend(per_tool={"search": 1}), "search") is None
    refused = before_tool_call(budget, spent, "search")
    assert refused is not None and refused.which == "tool_calls:search" and (refused.limit, refused.spent) == (2, 2)
    assert before_tool_call(budget, spent, "lookup") is None
    forbidden = before_tool_call(budget, Spend(), "delete")
    assert forbidden is not None and forbidden.which == "tool_calls:delete"


@pytest.mark.parametrize(
    ("which", "input_tokens", "max_output"),
    [("input_tokens", 100, 1), ("output_tokens", 1, 100), ("total_tokens", 60, 40)],
)
def test_a_token_limit_refuses_the_estimate_that_would_cross_it(which: str, input_tokens: int, max_output: int) -> None:
    budget = Budget(**{which: 1000})
    spent = Spend(input_tokens=900, output_tokens=0) if which != "output_tokens" else Spend(output_tokens=900)
    assert model_call(budget, spent, input_tokens=input_tokens, max_output=max_output) is None  # exactly 1000
    more = {"input_tokens": input_tokens + 1} if which != "output_tokens" else {"input_tokens": 1}
    over = model_call(budget, spent, **more, max_output=max_output + (which == "output_tokens"))
    assert over is not None and over.which == which and over.limit == 1000 and over.spent == 900
    assert over.needed == 101


def test_without_max_output_tokens_the_output_reserve_is_assumed() -> None:
    budget = Budget(output_tokens=500, output_reserve_tokens=500)
    assert model_call(budget, Spend(), max_output=None) is None
    refused = model_call(budget, Spend(output_tokens=1), max_output=None)
    assert refused is not None and refused.needed == 500
    assert estimate_model_call(Budget(), input_tokens=3, max_output_tokens=None, price=None).output_tokens == 1024


def test_a_cost_estimate_that_would_cross_the_limit_is_refused() -> None:
    budget = Budget(cost_usd=10.0)
    # 2 input tokens at $1 + 2 output tokens at $2: $6
    assert model_call(budget, Spend(cost_usd=4.0), input_tokens=2, max_output=2, price=DOLLAR_A_TOKEN) is None
    refused = model_call(budget, Spend(cost_usd=4.5), input_tokens=2, max_output=2, price=DOLLAR_A_TOKEN)
    assert refused == Exceeded(which="cost_usd", limit=10.0, spent=4.5, needed=6.0)


def test_without_a_price_only_the_settled_cost_counts() -> None:
    budget = Budget(cost_usd=0.1)
    assert model_call(budget, Spend(cost_usd=0.0999), input_tokens=10**6, price=None) is None
    refused = model_call(budget, Spend(cost_usd=0.1), price=None)
    assert refused is not None and refused.which == "cost_usd" and refused.needed == 0
    assert "unknown amount" in refused.sentence()
    free = Price(input=0.0, output=0.0)
    assert model_call(budget, Spend(cost_usd=0.1), price=free) is None  # a free call adds nothing


def test_the_driven_time_is_refused_once_it_reaches_the_limit_for_any_call() -> None:
    budget = Budget(seconds=60)
    assert model_call(budget, Spend(seconds=59.9)) is None
    assert before_tool_call(budget, Spend(seconds=59.9), "search") is None
    for refused in (model_call(budget, Spend(seconds=60.0)), before_tool_call(budget, Spend(seconds=60.0), "x")):
        assert refused is not None and refused.which == "seconds" and refused.spent == 60.0


def test_a_call_is_refused_only_for_the_limits_it_adds_to() -> None:
    budget = Budget(input_tokens=10, output_tokens=10, cost_usd=1.0, steps=1)
    spent = Spend(steps=1, input_tokens=10, output_tokens=10, cost_usd=1.0)
    assert before_tool_call(budget, spent, "search") is None
    assert model_call(Budget(tool_calls=0, per_tool={"x": 0}), Spend()) is None


def test_refusals_are_reported_in_a_fixed_order() -> None:
    budget = Budget(seconds=1, steps=1, cost_usd=0.0)
    spent = Spend(steps=1, cost_usd=1.0, seconds=0.5)
    refused = model_call(budget, spent, price=DOLLAR_A_TOKEN)
    assert refused is not None and refused.which == "steps"


# -- sentences ------------------------------------------------------------------------------------------------


def test_the_cost_sentence_gives_the_estimate_the_figures_and_the_setting() -> None:
    refused = Exceeded(which="cost_usd", limit=0.1, spent=0.095, needed=0.0123)
    assert refused.sentence() == (
        "the run would spend about $0.0123 on its next model call, with $0.0950 of its $0.1000 spent "
        "(budget_exceeded:cost_usd); raise the limit with Agent(budget=Budget(cost_usd=...))"
    )


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("steps", "the run has taken 4 steps, its limit"),
        ("model_calls", "the run has made 4 model calls, its limit"),
        ("tool_calls", "the run has made 4 tool calls, its limit"),
        ("tool_calls:search", "the run has called search 4 times, its limit"),
        ("input_tokens", "the run's next model call would use about 7 input tokens, with 4 of its 4 spent"),
        ("seconds", "the run has been driven for 4.0s, its limit is 4s"),
    ],
)
def test_every_sentence_names_the_limit_and_what_to_change(which: str, expected: str) -> None:
    sentence = Exceeded(which=which, limit=4, spent=4, needed=7).sentence()
    assert sentence.startswith(expected)
    setting = "per_tool={'search': ...}" if which.startswith("tool_calls:") else f"{which}=..."
    assert sentence.endswith(f"(budget_exceeded:{which}); raise the limit with Agent(budget=Budget({setting}))")


def test_an_ancestors_refusal_names_the_ancestor() -> None:
    refused = Exceeded(which="steps", limit=2, spent=2, needed=1, ledger="parent-7")
    assert refused.sentence().startswith("run 'parent-7', which this run's calls are charged to, has taken 2 steps")


# -- configuration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"steps": -1}, "Budget(steps=-1) is negative: give the most the run may use as a non-negative whole number"),
        ({"model_calls": True}, "Budget(model_calls=True) is not a whole number"),
        ({"tool_calls": 2.5}, "Budget(tool_calls=2.5) is not a whole number"),
        ({"input_tokens": "10k"}, "Budget(input_tokens='10k') is not a whole number"),
        ({"cost_usd": -0.5}, "Budget(cost_usd=-0.5) is negative"),
        ({"cost_usd": float("inf")}, "Budget(cost_usd=inf) is not a finite number"),
        ({"seconds": "60"}, "Budget(seconds='60') is not a number"),
        ({"per_tool": {"search": -1}}, "Budget(per_tool={'search': -1}): give each tool's name"),
        ({"per_tool": ["search"]}, "Budget(per_tool=...) takes a dict"),
        ({"wrap_up": 1}, "Budget(wrap_up=1) takes True or False"),
        ({"output_reserve_tokens": 0}, "Budget(output_reserve_tokens=0) must be a positive whole number"),
    ],
)
def test_a_bad_budget_is_refused_with_a_sentence_naming_the_field(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Budget(**settings)
    assert fragment in str(raised.value)


def test_a_limit_error_shows_the_setting_to_write() -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. Agent\(budget=Budget\(cost_usd=0\.5\)\), or None for no limit"):
        Budget(cost_usd=-1)


def test_a_budget_keeps_its_own_copy_of_per_tool_and_shows_only_its_limits() -> None:
    limits = {"search": 2}
    budget = Budget(cost_usd=0.1, per_tool=limits)
    limits["search"] = 99
    assert budget.per_tool == {"search": 2}
    assert repr(budget) == "Budget(per_tool={'search': 2}, cost_usd=0.1)"
    assert repr(Budget(steps=0, wrap_up=True)) == "Budget(steps=0, wrap_up=True)"


# -- figures --------------------------------------------------------------------------------------------------


def started() -> RunStarted:
    return RunStarted(at=100.0, run_id="r1", agent="a", task="Find it.", model="scripted", tools=("search", "read"))


def responded(step: int, at: float, *names: str, input_tokens: int, output_tokens: int, cost: float) -> ModelResponded:
    calls = tuple(ToolCall(id=f"c{step}.{i}", name=name) for i, name in enumerate(names))
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    return ModelResponded(at=at, step=step, response=ModelResponse(tool_calls=calls, usage=usage), cost_usd=cost)


def test_spend_of_the_replayed_journal_equals_the_figures_added_up_live() -> None:
    events: list[Event] = [started()]
    live = Spend()
    for step, names in enumerate([("search", "search"), ("read",), ()], start=1):
        at = 100.0 + step
        events.append(responded(step, at, *names, input_tokens=100 * step, output_tokens=10, cost=0.25))
        live = live.plus(Spend.model_call(input_tokens=100 * step, output_tokens=10, cost_usd=0.25))
        for index, name in enumerate(names):
            call_id = f"{step}.{index}"
            events.append(ToolCallStarted(at=at, call=call_id, tool_call_id=call_id, name=name, arguments={},
                                          idempotency_key=call_id))  # fmt: skip
            events.append(ToolCallFinished(at=at, call=call_id, tool_call_id=call_id, name=name, content="ok"))
            live = live.plus(Spend.tool_call(name))
    # a call refused before it could start (unknown tool) is not a tool call the budget counts
    events.append(ToolCallFinished(at=104.0, call="3.9", tool_call_id="x", name="nope", content="unknown tool"))
    state = replay(events)
    assert Spend.of(state, driven_s=0.0) == live
    assert live == Spend(steps=3, model_calls=3, tool_calls=3, per_tool={"search": 2, "read": 1},
                         input_tokens=600, output_tokens=30, cost_usd=0.75)  # fmt: skip
    assert Spend.of(state).seconds == state.active_s == 4.0
    assert Spend.of(state, driven_s=9.5).seconds == 9.5


def test_plus_merges_the_per_tool_counts_and_charged_up_keeps_steps_and_seconds_home() -> None:
    a = Spend(steps=1, tool_calls=2, per_tool={"search": 2}, cost_usd=0.5, seconds=3.0)
    b = Spend(steps=2, tool_calls=2, per_tool={"search": 1, "read": 1}, input_tokens=7, seconds=1.0)
    assert a.plus(b) == Spend(steps=3, tool_calls=4, per_tool={"search": 3, "read": 1}, input_tokens=7,
                              cost_usd=0.5, seconds=4.0)  # fmt: skip
    assert a.per_tool == {"search": 2}  # unchanged
    assert a.charged_up() == Spend(tool_calls=2, per_tool={"search": 2}, cost_usd=0.5)
    assert Spend(input_tokens=3, output_tokens=4).total_tokens == 7


# -- the prompt estimate ----------------------------------------------------------------------------------------

SCHEMAS = (ToolSchema(name="search", description="Search the docs.", parameters={"type": "object"}),)


async def test_the_estimate_is_what_the_scripted_model_reports() -> None:
    model = ScriptedModel([call("search", q="refund policy", limit=3), call("search", q="x"), reply("Done.")])
    messages: list[Message] = [UserMessage(text="What is the refund policy? " * 20)]
    memo: dict[str, Any] = {}
    for turn in range(3):
        request = ModelRequest(instructions="Be brief.", messages=Conversation(messages, memo), tools=SCHEMAS)
        estimate = estimate_input_tokens(request)
        response = await model.respond(request)
        assert estimate == response.usage.input_tokens, f"turn {turn + 1}"
        messages.append(response.as_message())
        for tool_call in response.tool_calls:
            messages.append(ToolResultMessage(call_id=tool_call.id, name="search", content="found " * (turn + 5)))
    plain = ModelRequest(instructions="Be brief.", messages=list(messages), tools=SCHEMAS)
    assert estimate_input_tokens(plain) == estimate_input_tokens(
        ModelRequest(instructions="Be brief.", messages=Conversation(messages, memo), tools=SCHEMAS)
    )


class Measured(str):
    """Text that counts how often its length is taken."""

    __slots__ = ()
    taken: list[int] = [0]  # noqa: RUF012

    def __len__(self) -> int:
        Measured.taken[0] += 1
        return super().__len__()


def test_the_estimate_measures_each_message_once_over_a_growing_conversation() -> None:
    Measured.taken[0] = 0
    messages: list[Message] = []
    memo: dict[str, Any] = {}
    for step in range(50):
        messages.append(AssistantMessage(text=Measured("thinking " * step)))
        messages.append(UserMessage(text=Measured("more")))
        estimate_input_tokens(ModelRequest(instructions="", messages=Conversation(messages, memo)))
    assert Measured.taken[0] == 100  # each message once; measuring it all at every step would take 2,550
    full = estimate_input_tokens(ModelRequest(instructions="", messages=list(messages)))
    assert Measured.taken[0] == 200  # a plain list has no memo: measured whole
    assert estimate_input_tokens(ModelRequest(instructions="", messages=Conversation(messages, memo))) == full


def test_a_shorter_conversation_under_the_same_memo_is_measured_again() -> None:
    memo: dict[str, Any] = {}
    long = [UserMessage(text="x" * 400), UserMessage(text="y" * 400)]
    assert estimate_input_tokens(ModelRequest(instructions="", messages=Conversation(long, memo))) == 200
    short: list[Message] = [UserMessage(text="z" * 40)]
    assert estimate_input_tokens(ModelRequest(instructions="", messages=Conversation(short, memo))) == 10
    assert estimate_input_tokens(ModelRequest(instructions="", messages=[])) == 1  # never 0
