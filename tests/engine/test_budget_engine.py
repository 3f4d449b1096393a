"""Budgets through the engine: every limit stops the run at its boundary (N calls allowed, the next refused) with
the partial answer and a sentence naming the limit and the spend; a tool call the budget cannot afford is refused
and the run goes on; ``wrap_up`` grants exactly one last turn without tools; and the spend survives a crash."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from agentkeel import (
    Agent,
    ModelError,
    ModelRequest,
    ModelResponse,
    Price,
    PriceTable,
    ScriptedModel,
    Store,
    ToolCall,
    UserMessage,
    calls,
    reply,
    tool,
)
from agentkeel.core.budget import Budget
from agentkeel.core.events import (
    Event,
    Intervened,
    ModelResponded,
    RunStarted,
    ToolCallFinished,
    ToolCallStarted,
)
from agentkeel.core.state import replay
from agentkeel.stores.base import DEFAULT_LEASE_S, RunRow

MakeAgent = Callable[..., Agent]

TURNS = 6
"""The script searches on turns 1..6, then answers on turn 7."""
FINAL = "Found everything."
PRICED = "priced"
DOLLAR_A_TOKEN = PriceTable().with_prices(priced=Price(input=1_000_000.0, output=0.0))
"""Input at $1 a token, output free: a run's cost is its input tokens, in exact whole dollars."""


def partial(n: int) -> str:
    return f"Searched {n} time(s) so far."


def searching(n: int) -> ModelResponse:
    return calls(("search", {"query": f"q{n}"}), text=partial(n))


SCRIPT: list[ModelResponse] = [*(searching(n) for n in range(1, TURNS + 1)), reply(FINAL)]


class Searches:
    """The search and lookup tools, counting the calls that really ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def tools(self) -> list[Any]:
        @tool
        def search(query: str) -> str:
            """Search the catalogue."""
            self.ran.append(f"search:{query}")
            return f"3 results for {query}"

        @tool
        def lookup(item: str) -> str:
            """Look one item up."""
            self.ran.append(f"lookup:{item}")
            return f"{item}: in stock"

        return [search, lookup]


class Crash(BaseException):
    """The process dies (not an Exception: nothing in the engine catches it)."""


class CrashingModel:
    """Plays a script, but the process dies when it is asked for turn ``crash_on``."""

    def __init__(self, script: list[ModelResponse], crash_on: int, *, name: str = "scripted") -> None:
        self._inner = ScriptedModel(script, name=name)
        self.name = name
        self._crash_on = crash_on

    async def respond(self, request: ModelRequest) -> ModelResponse:
        if turn_of(request) == self._crash_on:
            raise Crash()
        return await self._inner.respond(request)


def turn_of(request: ModelRequest) -> int:
    """The turn a request asks for: one more than the model turns it holds."""
    return 1 + sum(message.kind == "assistant" for message in request.messages)


def responses(events: list[Event]) -> list[ModelResponded]:
    return [event for event in events if isinstance(event, ModelResponded)]


def finished(events: list[Event]) -> dict[str, ToolCallFinished]:
    return {event.call: event for event in events if isinstance(event, ToolCallFinished)}


async def reference(make_agent: MakeAgent, store: Store, **settings: Any) -> list[ModelResponded]:
    """The model turns of the same script without a budget: each turn's usage and cost, to set limits from."""
    result = await make_agent(list(SCRIPT), Searches().tools(), **settings).run("Find the parts")
    assert (result.status, result.steps) == ("completed", TURNS + 1)
    return responses(await store.load(result.run_id))


# -- model calls: the run ends at the limit -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("which", "sentence"), [("steps", "has taken 3 steps"), ("model_calls", "has made 3 model calls")]
)
async def test_a_count_limit_allows_n_model_calls_and_refuses_the_next(
    make_agent: MakeAgent, recording_model: Any, which: str, sentence: str
) -> None:
    model = recording_model(list(SCRIPT))
    searches = Searches()
    result = await make_agent(model, searches.tools(), budget=Budget(**{which: 3})).run("Find the parts")
    assert (result.status, result.reason) == ("failed", f"budget_exceeded:{which}")
    assert model.calls == 3 and result.steps == 3  # the 4th call was refused before it started
    assert searches.ran == ["search:q1", "search:q2", "search:q3"]
    assert result.output == partial(3)  # the last thing the agent said
    assert sentence in result.detail and f"Agent(budget=Budget({which}=...))" in result.detail
    state = await make_agent(model).state(result.run_id)
    assert (state.status, state.reason, state.detail, state.output) == (
        "failed",
        f"budget_exceeded:{which}",
        result.detail,
        partial(3),
    )


@pytest.mark.parametrize("which", ["input_tokens", "output_tokens", "total_tokens"])
async def test_a_token_limit_allows_the_calls_it_can_afford_and_refuses_the_next(
    make_agent: MakeAgent, recording_model: Any, store: Store, which: str
) -> None:
    turns = await reference(make_agent, store)
    spent = {
        "input_tokens": sum(t.response.usage.input_tokens for t in turns[:3]),
        "output_tokens": sum(t.response.usage.output_tokens for t in turns[:3]),
        "total_tokens": sum(t.response.usage.total_tokens for t in turns[:3]),
    }[which]
    # With one token of output reserved per call, a limit of exactly what three turns used affords three turns.
    budget = Budget(**{which: spent}, output_reserve_tokens=1)
    model = recording_model(list(SCRIPT))
    result = await make_agent(model, Searches().tools(), budget=budget).run("Find the parts")
    assert (result.status, result.reason) == ("failed", f"budget_exceeded:{which}")
    assert model.calls == 3 and result.output == partial(3)
    used = {"input_tokens": result.usage.input_tokens, "output_tokens": result.usage.output_tokens}
    used["total_tokens"] = result.usage.total_tokens
    assert used[which] == spent  # nothing past the limit
    kind = which.removesuffix("_tokens")
    assert f"{kind} tokens, with {spent:,} of its {spent:,} spent" in result.detail
    assert f"Agent(budget=Budget({which}=...))" in result.detail


async def test_one_token_less_refuses_the_last_of_those_calls(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    turns = await reference(make_agent, store)
    limit = sum(t.response.usage.input_tokens for t in turns[:3]) - 1
    model = recording_model(list(SCRIPT))
    result = await make_agent(model, Searches().tools(), budget=Budget(input_tokens=limit)).run("Find the parts")
    assert (result.status, result.reason, model.calls) == ("failed", "budget_exceeded:input_tokens", 2)
    assert result.output == partial(2)


async def test_a_cost_limit_prices_the_next_call_before_it_starts(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    priced = recording_model(list(SCRIPT), name=PRICED)
    first = await make_agent(priced, Searches().tools(), prices=DOLLAR_A_TOKEN).run("Find the parts")
    turns = responses(await store.load(first.run_id))
    assert [t.cost_usd for t in turns] == [float(t.response.usage.input_tokens) for t in turns]  # the price applies
    limit = sum(t.cost_usd for t in turns[:3])

    model = recording_model(list(SCRIPT), name=PRICED)
    budget = Budget(cost_usd=limit, output_reserve_tokens=1)
    result = await make_agent(model, Searches().tools(), prices=DOLLAR_A_TOKEN, budget=budget).run("Find the parts")
    assert (result.status, result.reason) == ("failed", "budget_exceeded:cost_usd")
    assert model.calls == 3 and result.output == partial(3)
    assert result.cost_usd == limit
    next_cost = turns[3].cost_usd
    assert f"would spend about ${next_cost:,.2f} on its next model call" in result.detail
    assert f"with ${limit:,.2f} of its ${limit:,.2f} spent" in result.detail
    assert "Agent(budget=Budget(cost_usd=...))" in result.detail


async def test_a_free_model_is_never_stopped_by_a_cost_limit(make_agent: MakeAgent) -> None:
    result = await make_agent(list(SCRIPT), Searches().tools(), budget=Budget(cost_usd=0.0)).run("Find the parts")
    assert (result.status, result.output, result.cost_usd) == ("completed", FINAL, 0.0)


async def test_a_model_call_retried_after_a_transient_failure_counts_once(
    make_agent: MakeAgent, recording_model: Any
) -> None:
    inner = recording_model(list(SCRIPT))
    failed_once: set[int] = set()

    class Flaky:
        name = "scripted"

        async def respond(self, request: ModelRequest) -> ModelResponse:
            turn = turn_of(request)
            if turn not in failed_once:
                failed_once.add(turn)
                raise ModelError("overloaded", retryable=True, kind="overloaded")
            return await inner.respond(request)

    result = await make_agent(Flaky(), Searches().tools(), budget=Budget(model_calls=3)).run("Find the parts")
    assert (result.status, result.reason, result.steps) == ("failed", "budget_exceeded:model_calls", 3)
    state = await make_agent(Flaky()).state(result.run_id)
    assert state.model_retries == 3 and state.model_calls == 3


# -- tool calls: refused one by one, the run goes on -----------------------------------------------------------


async def test_a_tool_call_past_the_runs_limit_is_refused_and_the_run_ends_before_its_next_model_call(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model([*(searching(n) for n in range(1, 5)), reply("Three searches were all I could do.")])
    searches = Searches()
    result = await make_agent(model, searches.tools(), budget=Budget(tool_calls=3)).run("Find the parts")
    assert (result.status, result.reason) == ("failed", "budget_exceeded:tool_calls")
    assert model.calls == 4  # no model call after the refusal
    assert result.output == partial(4)  # the partial result: what the agent said last
    assert "3 tool calls" in result.detail or "tool_calls" in result.detail
    assert searches.ran == ["search:q1", "search:q2", "search:q3"]
    events = await store.load(result.run_id)
    assert [e.call for e in events if isinstance(e, ToolCallStarted)] == ["1.1", "2.1", "3.1"]
    refused = finished(events)["4.1"]
    assert refused.error is not None and refused.error.kind == "budget_spent" and refused.attempts == 0
    assert "at most 3 tool calls" in refused.content
    state = await make_agent(model).state(result.run_id)
    assert state.tool_counts == {"search": 3} and state.tool_errors == 1 and state.tools_spent


async def test_with_wrap_up_a_spent_tool_budget_gives_a_last_turn_to_answer(
    make_agent: MakeAgent, recording_model: Any
) -> None:
    model = recording_model([*(searching(n) for n in range(1, 5)), reply("Three searches were all I could do.")])
    budget = Budget(tool_calls=3, wrap_up=True)
    result = await make_agent(model, Searches().tools(), budget=budget).run("Find the parts")
    assert (result.status, result.reason) == ("failed", "budget_exceeded:tool_calls")
    assert result.output == "Three searches were all I could do."
    assert model.requests[-1].tools == () and model.calls == 5


async def test_a_per_tool_limit_leaves_the_other_tools_free(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model(
        [
            searching(1),
            searching(2),
            searching(3),
            calls(("lookup", {"item": "bolt"})),
            reply("The bolt is in stock."),
        ]
    )
    searches = Searches()
    budget = Budget(per_tool={"search": 2})
    result = await make_agent(model, searches.tools(), budget=budget).run("Find the parts")
    assert (result.status, result.reason, result.output) == ("completed", "", "The bolt is in stock.")
    assert searches.ran == ["search:q1", "search:q2", "lookup:bolt"]
    done = finished(await store.load(result.run_id))
    refused = done["3.1"]
    assert refused.error is not None and refused.error.kind == "over_budget"
    assert "search was not run" in refused.content and "at most 2 times" in refused.content
    assert done["4.1"].error is None and done["4.1"].content == "bolt: in stock"


async def test_a_tool_forbidden_by_a_zero_limit_never_runs(make_agent: MakeAgent, store: Store) -> None:
    searches = Searches()
    script = [searching(1), calls(("lookup", {"item": "nut"})), reply("done")]
    result = await make_agent(script, searches.tools(), budget=Budget(per_tool={"search": 0})).run("go")
    assert result.status == "completed" and searches.ran == ["lookup:nut"]
    assert finished(await store.load(result.run_id))["1.1"].error.kind == "over_budget"  # type: ignore[union-attr]


async def test_calls_of_one_step_are_charged_in_the_models_order(make_agent: MakeAgent, store: Store) -> None:
    searches = Searches()
    step = calls(("search", {"query": "a"}), ("lookup", {"item": "nut"}), ("search", {"query": "b"}))
    result = await make_agent([step, reply("done")], searches.tools(), budget=Budget(per_tool={"search": 1})).run("go")
    assert result.status == "completed" and sorted(searches.ran) == ["lookup:nut", "search:a"]
    done = finished(await store.load(result.run_id))
    assert [done[c].error.kind if done[c].error else None for c in ("1.1", "1.2", "1.3")] == [None, None, "over_budget"]


async def test_the_refusal_of_one_tool_tells_the_model_what_it_can_still_do(
    make_agent: MakeAgent, store: Store
) -> None:
    script = [searching(1), searching(2), calls(("lookup", {"item": "bolt"})), reply("done")]
    result = await make_agent(script, Searches().tools(), budget=Budget(per_tool={"search": 1})).run("go")
    refused = finished(await store.load(result.run_id))["2.1"]
    assert "search was not run" in refused.content and "use the other tools" in refused.content
    assert "last turn" not in refused.content and "cannot call tools" not in refused.content


# -- wrap_up: one last turn without tools ---------------------------------------------------------------------


async def test_wrap_up_gives_exactly_one_turn_without_tools_and_keeps_its_answer(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model([searching(1), searching(2), reply("Partial: q1 and q2 found 6 parts.")])
    searches = Searches()
    result = await make_agent(model, searches.tools(), budget=Budget(steps=2, wrap_up=True)).run("Find the parts")
    assert (result.status, result.reason) == ("failed", "budget_exceeded:steps")
    assert result.output == "Partial: q1 and q2 found 6 parts."
    assert "budget_exceeded:steps" in result.detail
    assert model.calls == 3 and searches.ran == ["search:q1", "search:q2"]
    assert [len(r.tools) > 0 for r in model.requests] == [True, True, False]
    last = model.requests[-1].messages[-1]
    assert isinstance(last, UserMessage) and "reached its budget (steps)" in last.text and "last turn" in last.text
    events = await store.load(result.run_id)
    told = [e for e in events if isinstance(e, Intervened)]
    assert len(told) == 1 and (told[0].rule, told[0].final, told[0].final_reason) == (
        "budget",
        True,
        "budget_exceeded:steps",
    )
    assert told[0].message == last.text and "has taken 2 steps" in told[0].evidence
    kinds = [e.kind for e in events]
    assert kinds[-3:] == ["intervened", "model_responded", "run_ended"]


async def test_a_last_turn_that_still_asks_for_a_tool_runs_none(
    make_agent: MakeAgent, recording_model: Any, store: Store
) -> None:
    model = recording_model(lambda request: searching(turn_of(request)))  # never stops searching
    searches = Searches()
    result = await make_agent(model, searches.tools(), budget=Budget(tool_calls=2, steps=5, wrap_up=True)).run("go")
    assert (result.status, result.reason, model.calls) == ("failed", "budget_exceeded:tool_calls", 4)
    assert result.output == partial(4)  # the last turn's text, its call never run
    assert searches.ran == ["search:q1", "search:q2"]  # the third was refused: tool_calls=2
    events = await store.load(result.run_id)
    assert sum(isinstance(e, ToolCallStarted) for e in events) == 2
    assert not any(isinstance(e, ToolCallStarted | ToolCallFinished) and e.call.startswith("4.") for e in events)
    assert model.requests[-1].tools == ()


async def test_without_wrap_up_there_is_no_last_turn(make_agent: MakeAgent, recording_model: Any, store: Store) -> None:
    model = recording_model(list(SCRIPT))
    result = await make_agent(model, Searches().tools(), budget=Budget(steps=2)).run("go")
    assert (result.status, result.reason, model.calls) == ("failed", "budget_exceeded:steps", 2)
    assert all(r.tools for r in model.requests)
    assert not any(isinstance(e, Intervened) for e in await store.load(result.run_id))


# -- the spend survives a crash ---------------------------------------------------------------------------------


LIMITS: dict[str, tuple[Budget, str]] = {
    # Each limit bites after turn 5, so every crash below happens before it.
    "steps": (Budget(steps=5), "budget_exceeded:steps"),
    "tool_calls": (Budget(tool_calls=4), "budget_exceeded:tool_calls"),  # search 5 refused: the run ends
    "per_tool": (Budget(per_tool={"search": 4}), ""),
    "input_tokens": (Budget(input_tokens=600, output_reserve_tokens=1), "budget_exceeded:input_tokens"),
    "cost_usd": (Budget(cost_usd=600.0, output_reserve_tokens=1), "budget_exceeded:cost_usd"),
}


CRASH_ON = {"steps": 3, "tool_calls": 5, "per_tool": 3, "input_tokens": 5, "cost_usd": 4}
"""The turn whose model call the crash eats: before the limit bites, at different distances from it."""


@pytest.mark.parametrize("limit", list(LIMITS))
async def test_the_spend_survives_a_crash_and_the_resumed_run_stops_at_the_same_limit(
    make_agent: MakeAgent, store: Store, clock: Any, limit: str
) -> None:
    budget, reason = LIMITS[limit]
    crash_on = CRASH_ON[limit]
    settings: dict[str, Any] = {"budget": budget, "prices": DOLLAR_A_TOKEN}
    straight_searches = Searches()
    straight = await make_agent(ScriptedModel(list(SCRIPT), name=PRICED), straight_searches.tools(), **settings).run(
        "Find the parts", run_id="straight"
    )
    assert straight.reason == reason and len(straight_searches.ran) in (4, 5)  # the limit bit mid-run

    searches = Searches()
    crashing = make_agent(CrashingModel(list(SCRIPT), crash_on, name=PRICED), searches.tools(), **settings)
    with pytest.raises(Crash):
        await crashing.run("Find the parts", run_id="crashed")
    clock.advance(DEFAULT_LEASE_S + 1)  # the dead process's lease runs out
    assert (await crashing.state("crashed")).steps_completed == crash_on - 1

    later = make_agent(ScriptedModel(list(SCRIPT), name=PRICED), searches.tools(), **settings)  # a new process
    resumed = await later.resume("crashed")
    assert (resumed.status, resumed.reason, resumed.output) == (straight.status, straight.reason, straight.output)
    assert (resumed.steps, resumed.usage, resumed.cost_usd) == (straight.steps, straight.usage, straight.cost_usd)
    assert searches.ran == straight_searches.ran  # no tool call more than the uninterrupted run made
    a, b = await later.state("straight"), await later.state("crashed")
    assert a.tool_counts == b.tool_counts and a.tool_errors == b.tool_errors


async def test_a_crash_during_the_wrap_up_turn_resumes_into_that_turn_only(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    script = [searching(1), searching(2), reply("Partial: two searches done.")]
    budget = Budget(steps=2, wrap_up=True)
    crashing = make_agent(CrashingModel(script, 3), Searches().tools(), budget=budget)
    with pytest.raises(Crash):
        await crashing.run("Find the parts", run_id="r")
    clock.advance(DEFAULT_LEASE_S + 1)
    model = recording_model(script)
    result = await make_agent(model, Searches().tools(), budget=budget).resume("r")
    assert (result.status, result.reason, result.output) == (
        "failed",
        "budget_exceeded:steps",
        "Partial: two searches done.",
    )
    assert model.calls == 1 and model.requests[0].tools == ()
    assert sum(isinstance(e, Intervened) for e in await store.load("r")) == 1


async def driven_for_100_seconds(store: Store, clock: Any, run_id: str) -> None:
    """A journal whose driver died after driving the run for 100 s (its events' times say so)."""
    now = time.time()
    first = RunStarted(at=now - 200, run_id=run_id, agent="test", task="Find the parts", model="scripted")
    state = replay([first])
    await store.create_run(first, RunRow.of(state), owner="dead-driver", lease_s=30.0)
    arguments = {"query": "q1"}
    response = ModelResponse(text=partial(1), tool_calls=(ToolCall(id="call_1_1", name="search", arguments=arguments),))
    events: list[Event] = [
        ModelResponded(at=now - 150, step=1, response=response),
        ToolCallStarted(
            at=now - 150, call="1.1", tool_call_id="call_1_1", name="search", arguments=arguments, idempotency_key="k"
        ),
        ToolCallFinished(at=now - 100, call="1.1", tool_call_id="call_1_1", name="search", content="3 results"),
    ]
    after = state.last_seq
    for event in events:
        state.apply(event)
    assert state.active_s == pytest.approx(100.0)
    await store.append(run_id, "dead-driver", after, events, RunRow.of(state))
    clock.advance(31.0)  # its lease runs out


async def test_driven_time_is_rebuilt_from_the_journal_and_checked_on_resume(
    make_agent: MakeAgent, recording_model: Any, store: Store, clock: Any
) -> None:
    """No clock is watched here: the 100 s come from the journal, so the figures are exact."""
    await driven_for_100_seconds(store, clock, "slow")
    model = recording_model([searching(1), reply(FINAL)])
    result = await make_agent(model, Searches().tools(), budget=Budget(seconds=50)).resume("slow")
    assert (result.status, result.reason, result.output) == ("failed", "budget_exceeded:seconds", partial(1))
    assert model.calls == 0  # refused before the first call of this process
    assert "has been driven for 100." in result.detail and "its limit is 50s" in result.detail

    await driven_for_100_seconds(store, clock, "roomy")
    model = recording_model([searching(1), reply(FINAL)])
    result = await make_agent(model, Searches().tools(), budget=Budget(seconds=1000)).resume("roomy")
    assert (result.status, result.output, model.calls) == ("completed", FINAL, 1)
