"""The ledger: reservations before calls, settlement after, children charging every ancestor atomically, and
figures rebuilt from the journal on resume."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentkeel import ModelResponse, Price, Usage
from agentkeel.core.budget import Budget, Exceeded, Spend
from agentkeel.core.events import Event, ModelResponded, RunStarted, ToolCallFinished, ToolCallStarted
from agentkeel.core.state import replay
from agentkeel.ledger import Ledger, Reservation
from agentkeel.pricing import cost_of

PRICE = Price(input=3.0, output=15.0)


def reserved(result: Reservation | Exceeded) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


def refused(result: Reservation | Exceeded) -> Exceeded:
    assert isinstance(result, Exceeded), result
    return result


def model(ledger: Ledger, input_tokens: int = 100, max_output: int | None = 50) -> Reservation | Exceeded:
    return ledger.reserve_model_call(input_tokens=input_tokens, max_output_tokens=max_output, price=PRICE)


def test_open_reservations_count_against_the_budget() -> None:
    ledger = Ledger(Budget(model_calls=2), Spend())
    first, second = reserved(model(ledger)), reserved(model(ledger))
    third = refused(model(ledger))
    assert (third.which, third.limit, third.spent) == ("model_calls", 2, 2)
    assert first.open and second.open and ledger.reserved.model_calls == 2


def test_settle_replaces_the_estimate_with_what_was_used() -> None:
    ledger = Ledger(Budget(), Spend(input_tokens=1000, cost_usd=0.5))
    reservation = reserved(ledger.reserve_model_call(input_tokens=120, max_output_tokens=None, price=PRICE))
    assert ledger.spent.output_tokens == 1024  # the output reserve, until the call settles
    actual = Spend.model_call(input_tokens=110, output_tokens=20, cost_usd=0.0006)
    ledger.settle(reservation, actual=actual)
    assert not reservation.open
    assert ledger.reserved == Spend()
    assert ledger.spent == ledger.settled == Spend(input_tokens=1000, cost_usd=0.5).plus(actual)


def test_release_gives_the_reservation_back() -> None:
    ledger = Ledger(Budget(input_tokens=1000), Spend(input_tokens=500))
    held = reserved(model(ledger, input_tokens=400))
    refused(model(ledger, input_tokens=400))  # 500 + 400 held + 400 > 1000
    ledger.release(held)
    assert ledger.spent == Spend(input_tokens=500)
    reserved(model(ledger, input_tokens=400))


def test_a_tool_call_settles_as_reserved_and_a_per_tool_limit_leaves_other_tools_free() -> None:
    ledger = Ledger(Budget(per_tool={"search": 1}), Spend())
    ledger.settle(reserved(ledger.reserve_tool_call("search")))
    assert refused(ledger.reserve_tool_call("search")).which == "tool_calls:search"
    reserved(ledger.reserve_tool_call("read"))
    assert ledger.spent.per_tool == {"search": 1, "read": 1}


def test_a_reservation_closes_once_and_only_on_its_own_ledger() -> None:
    ledger, other = Ledger(None, Spend(), name="r1"), Ledger(None, Spend(), name="r2")
    reservation = reserved(ledger.reserve_tool_call("search"))
    with pytest.raises(ValueError, match="ledger 'r2': the reservation belongs to another run"):
        other.settle(reservation)
    ledger.release(reservation)
    with pytest.raises(ValueError, match="ledger 'r1': the reservation was already settled or released"):
        ledger.settle(reservation)


def test_a_child_charges_its_calls_tokens_and_cost_to_every_ancestor_but_not_its_steps_or_time() -> None:
    root = Ledger(None, Spend(steps=4, seconds=30.0), name="root")
    parent = Ledger(None, Spend(), parent=root, name="parent")
    child = Ledger(None, Spend(seconds=5.0), parent=parent, name="child")
    used = Spend.model_call(input_tokens=100, output_tokens=20, cost_usd=0.01)
    child.settle(reserved(model(child)), actual=used)
    child.settle(reserved(child.reserve_tool_call("search")))
    charged = Spend(model_calls=1, tool_calls=1, per_tool={"search": 1}, input_tokens=100, output_tokens=20,
                    cost_usd=0.01)  # fmt: skip
    assert child.spent == charged.plus(Spend(steps=1, seconds=5.0))
    assert parent.spent == charged
    assert root.spent == charged.plus(Spend(steps=4, seconds=30.0))


def test_an_ancestors_exhaustion_is_named() -> None:
    root = Ledger(Budget(cost_usd=0.01), Spend(cost_usd=0.0095), name="research-1")
    child = Ledger(Budget(cost_usd=5.0), Spend(), parent=Ledger(None, Spend(), parent=root, name="mid"), name="c")
    exceeded = refused(model(child, input_tokens=150))  # 150 in at $3/M + 50 out at $15/M: $0.0012
    assert (exceeded.which, exceeded.ledger, exceeded.limit, exceeded.spent) == ("cost_usd", "research-1", 0.01, 0.0095)
    assert exceeded.needed == pytest.approx(0.0012)
    assert exceeded.sentence().startswith(
        "run 'research-1', which this run's calls are charged to, would spend about $0.0012 on its next model call, "
        "with $0.0095 of its $0.0100 spent (budget_exceeded:cost_usd)"
    )
    assert child.spent == Spend() and root.spent == Spend(cost_usd=0.0095)  # nothing reserved anywhere


def test_the_childs_own_limits_are_checked_first_and_unnamed() -> None:
    root = Ledger(Budget(steps=0, model_calls=0), Spend(), name="root")
    child = Ledger(Budget(steps=0), Spend(), parent=root, name="child")
    assert refused(model(child)) == Exceeded(which="steps", limit=0, spent=0, needed=1)
    roomy = Ledger(Budget(steps=1), Spend(), parent=root, name="roomy")
    assert refused(model(roomy)).ledger == "root"  # the root's steps are its own: its model_calls limit stops it


def test_a_parent_out_of_time_refuses_its_childrens_calls() -> None:
    now = [10.0]
    parent = Ledger(Budget(seconds=60), Spend(), name="parent", clock=lambda: now[0])
    child = Ledger(Budget(), Spend(), parent=parent, name="child")
    reserved(child.reserve_tool_call("search"))
    now[0] = 60.0
    exceeded = refused(child.reserve_tool_call("search"))
    assert (exceeded.which, exceeded.ledger, exceeded.spent) == ("seconds", "parent", 60.0)
    assert parent.spent.seconds == 60.0 and child.spent.seconds == 0.0


def test_the_wrap_up_turn_is_reserved_past_the_limit() -> None:
    ledger = Ledger(Budget(model_calls=1), Spend(model_calls=1))
    refused(model(ledger))
    wrap = reserved(ledger.reserve_model_call(input_tokens=10, max_output_tokens=100, price=PRICE, wrap_up=True))
    ledger.settle(wrap, actual=Spend.model_call(input_tokens=10, output_tokens=30, cost_usd=0.0))
    assert ledger.spent.model_calls == 2


# -- parallel children never overspend the parent ------------------------------------------------------------

PARENT = Budget(model_calls=6, tool_calls=5, per_tool={"search": 3}, input_tokens=3000, output_tokens=900,
                total_tokens=3500, cost_usd=0.02)  # fmt: skip
CHILD_BUDGETS = st.one_of(st.none(), st.builds(Budget, cost_usd=st.sampled_from([0.005, 0.01]), wrap_up=st.just(False)))
STEP = st.tuples(
    st.integers(0, 3),  # which child
    st.sampled_from(["model", "tool", "settle", "release"]),
    st.integers(1, 1200),  # input tokens
    st.one_of(st.none(), st.integers(1, 600)),  # max output tokens
    st.sampled_from(["search", "read"]),
    st.floats(0.0, 1.0),  # how much of the estimate the call really used
)


@dataclass
class Child:
    ledger: Ledger
    open: list[Reservation] = field(default_factory=list)


@settings(max_examples=300, deadline=None)
@given(budgets=st.lists(CHILD_BUDGETS, min_size=4, max_size=4), steps=st.lists(STEP, max_size=60))
def test_parallel_children_never_overspend_their_parent(budgets: list[Budget | None], steps: list[tuple]) -> None:
    parent = Ledger(PARENT, Spend(input_tokens=200, cost_usd=0.001), name="parent")
    children = [Child(Ledger(b, Spend(), parent=parent, name=f"c{i}")) for i, b in enumerate(budgets)]
    for which, action, input_tokens, max_output, tool, share in steps:
        child = children[which]
        if action == "model":
            before = parent.spent
            result = child.ledger.reserve_model_call(input_tokens=input_tokens, max_output_tokens=max_output,
                                                     price=PRICE)  # fmt: skip
            if isinstance(result, Reservation):
                child.open.append(result)
            else:
                assert parent.spent == before  # a refusal reserves nothing
        elif action == "tool":
            result = child.ledger.reserve_tool_call(tool)
            if isinstance(result, Reservation):
                child.open.append(result)
        elif child.open:
            reservation = child.open.pop(0)
            if action == "release":
                child.ledger.release(reservation)
            elif reservation.estimate.model_calls:  # a provider reports at most what was estimated
                estimate = reservation.estimate
                usage = Usage(input_tokens=int(estimate.input_tokens * share),
                              output_tokens=int(estimate.output_tokens * share))  # fmt: skip
                actual = Spend.model_call(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                                          cost_usd=cost_of(PRICE, usage))  # fmt: skip
                child.ledger.settle(reservation, actual=actual)
            else:
                child.ledger.settle(reservation)
        spent = parent.spent
        assert spent.model_calls <= 6 and spent.tool_calls <= 5 and spent.per_tool.get("search", 0) <= 3
        assert spent.input_tokens <= 3000 and spent.output_tokens <= 900 and spent.total_tokens <= 3500
        assert spent.cost_usd <= 0.02 + 1e-12
        total = Spend(input_tokens=200, cost_usd=0.001)
        for each in children:
            total = total.plus(each.ledger.spent.charged_up())
        assert spent.model_calls == total.model_calls and spent.input_tokens == total.input_tokens
        assert spent.cost_usd == pytest.approx(total.cost_usd)


# -- budgets survive resume --------------------------------------------------------------------------------


def test_a_ledger_rebuilt_from_the_journal_holds_the_live_figures_and_refuses_the_same_call() -> None:
    budget = Budget(model_calls=5, tool_calls=3, cost_usd=0.01)
    events: list[Event] = [RunStarted(at=0.0, run_id="r1", agent="a", task="t", model="m")]
    live = Ledger(budget, Spend.of(replay(events)), name="r1")
    step = 0
    while True:
        reservation = model(live, input_tokens=400, max_output=100)
        if isinstance(reservation, Exceeded):
            break
        step += 1
        usage = Usage(input_tokens=400 + 50 * step, output_tokens=40)
        cost = cost_of(PRICE, usage)
        response = ModelResponse(usage=usage)
        events.append(ModelResponded(at=float(step), step=step, response=response, cost_usd=cost))
        live.settle(reservation, actual=Spend.model_call(input_tokens=usage.input_tokens,
                                                         output_tokens=usage.output_tokens, cost_usd=cost))  # fmt: skip
        tool = live.reserve_tool_call("search")
        if isinstance(tool, Reservation):
            call = f"{step}.1"
            events.append(ToolCallStarted(at=float(step), call=call, tool_call_id=call, name="search", arguments={},
                                          idempotency_key=call))  # fmt: skip
            events.append(ToolCallFinished(at=float(step), call=call, tool_call_id=call, name="search", content=""))
            live.settle(tool)
    assert step == 4 and reservation.which == "cost_usd"  # four calls of ~$0.0020, then the fifth would cross
    resumed = Ledger(budget, Spend.of(replay(events)), name="r1")
    assert resumed.spent.tool_calls == live.spent.tool_calls == 3
    assert resumed.spent == live.spent.plus(Spend(seconds=resumed.spent.seconds))  # the journal's time: 4s
    assert refused(model(resumed, input_tokens=400, max_output=100)) == reservation
    assert refused(resumed.reserve_tool_call("search")).which == "tool_calls"
