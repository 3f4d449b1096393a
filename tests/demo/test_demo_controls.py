"""Tickets 6 to 9 of ``keel demo``: an approval gate, a spiral, a budget, a rollback, with the scripted model,
offline."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentkeel import MemoryStore, ScriptedModel, reply
from agentkeel.cli.render import Output
from agentkeel.core.events import (
    ApprovalRequested,
    CallApproved,
    CompensationFinished,
    CompensationStarted,
    Event,
    Intervened,
    ModelResponded,
    RollbackStarted,
    RunEnded,
    RunPaused,
    ToolCallStarted,
)
from agentkeel.core.messages import ModelRequest, ModelResponse, ToolResultMessage
from agentkeel.demo.control_run import ROLLBACK_REASON, Desk, Outcome, approval, rollback, runaway, spiral
from agentkeel.demo.control_tickets import BY_KEY, RUNAWAY_BUDGET, SMALL_REFUND_ORDER, SPIRAL_ORDER
from agentkeel.demo.desk import GATES, build_agent
from agentkeel.demo.shop import SHOP_PATH, Shop
from agentkeel.demo.supervisor import REF
from agentkeel.errors import ResolveError
from agentkeel.models.scripted import calls


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(out=Output(), store=MemoryStore(), shop=Shop.fresh(tmp_path / "shop.db"), model=None)


def play(story: object, desk: Desk) -> tuple[Outcome, list[Event]]:
    async def go() -> tuple[Outcome, list[Event]]:
        outcome: Outcome = await story(desk)  # type: ignore[operator]
        return outcome, await desk.store.load(outcome.result.run_id)

    return asyncio.run(go())


def index(events: list[Event], kind: type[Event]) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, kind))


def test_a_refund_above_the_limit_waits_for_a_supervisor_then_moves_the_money_once(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome, events = play(approval, desk)

    result = outcome.result
    assert outcome.ok and (result.status, result.reason) == ("completed", "")
    held = events[index(events, ApprovalRequested)]
    assert (held.call, held.name, held.arguments["amount_usd"]) == ("2.1", "issue_refund", 389.0)
    assert held.why == "refunds above $300 need a supervisor's approval"
    paused = events[index(events, RunPaused)]
    assert (paused.reason, paused.calls) == ("awaiting_approval", ("2.1",))
    approved = index(events, CallApproved)
    assert events[approved].by == "supervisor"
    [refund] = [i for i, e in enumerate(events) if isinstance(e, ToolCallStarted) and e.name == "issue_refund"]
    assert index(events, RunPaused) < approved < refund  # the money moved only after the approval
    assert desk.shop.refund_count("#1007") == 1
    out = capsys.readouterr().out
    assert "paused(awaiting_approval) · 2 steps · 2 tool calls" in out
    assert re.search(rf"^  keel approve {result.run_id} 2\.1 +approves it, and the run resumes$", out, re.M)
    assert "⏸ call 2.1 held for approval: refunds above $300 need a supervisor's approval" in out
    assert "✓ call 2.1 approved by supervisor" in out
    assert "Proof: refunds for order #1007 in the shop's database: 1, issued after the approval." in out
    assert f"keel show {result.run_id}" in out


def test_the_gate_holds_refunds_above_300_dollars_only() -> None:
    [rule] = GATES
    assert rule.when is not None and rule.tools == frozenset({"issue_refund"})
    assert [rule.when({"amount_usd": amount}) for amount in (45.0, 249.0, 300.0, 300.01, 389.0)] == [
        False,
        False,
        False,
        True,
        True,
    ]


def test_the_printed_keel_approve_command_resumes_the_held_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    shop = Shop.fresh(tmp_path / SHOP_PATH)
    agent = build_agent(shop=shop, store=url, ticket=BY_KEY["approval"], ref=REF)

    async def hold() -> str:
        try:
            result = await agent.run(BY_KEY["approval"].task)
            assert (result.status, result.reason) == ("paused", "awaiting_approval")
            return result.run_id
        finally:
            await agent.store.close()

    run_id = asyncio.run(hold())
    env = {k: v for k, v in os.environ.items() if k not in ("KEEL_STORE", "FORCE_COLOR", "TTY_COMPATIBLE")}
    approved = subprocess.run(
        [sys.executable, "-m", "agentkeel.cli", "approve", run_id, "2.1", "--store", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"completed  run {run_id}")
    assert "A supervisor approved your refund: $389.00 for order #1007" in approved.stdout
    assert shop.refund_count("#1007") == 1


def test_a_spiral_is_told_once_then_stopped_with_the_evidence(desk: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    outcome, events = play(spiral, desk)

    result = outcome.result
    assert outcome.ok and (result.status, result.reason) == ("failed", "loop_detected")
    lookups = [e for e in events if isinstance(e, ToolCallStarted)]
    assert [(e.name, e.arguments) for e in lookups] == [("get_order", {"order_id": SPIRAL_ORDER})] * 6
    [told] = [e for e in events if isinstance(e, Intervened)]
    assert told.rule == "repeated_error"
    failed = f"get_order has failed 3 times with the same error: There is no order {SPIRAL_ORDER}"
    assert told.message.startswith(failed)
    assert "change your approach" in told.message
    assert "(calls 1.1, 2.1, 3.1)" in told.evidence
    told_at = events.index(told)
    steps = {e.step: i for i, e in enumerate(events) if isinstance(e, ModelResponded)}
    assert steps[3] < told_at < steps[4]  # told after the third failure, before the fourth model turn
    ended = events[-1]
    assert isinstance(ended, RunEnded) and told_at < len(events) - 1
    assert ended.error.startswith("loop detected (repeated_error): get_order failed 3 times")
    assert "(calls 4.1, 5.1, 6.1)" in ended.error and ended.error.endswith("the model had been told 1 time(s) before")
    out = capsys.readouterr().out
    assert "keel     (repeated_error) get_order has failed 3 times with the same error" in out
    assert "✗ the same error, 6th time" in out
    assert f"Evidence, in the journal: {ended.error}" in out


def test_a_runaway_is_stopped_by_its_cost_budget_after_a_last_turn_without_tools(
    desk: Desk, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome, events = play(runaway, desk)

    result = outcome.result
    assert outcome.ok and (result.status, result.reason) == ("failed", "budget_exceeded:cost_usd")
    assert RUNAWAY_BUDGET.cost_usd == 0.03 and RUNAWAY_BUDGET.wrap_up
    [told] = [e for e in events if isinstance(e, Intervened)]
    assert (told.rule, told.final, told.final_reason) == ("budget", True, "budget_exceeded:cost_usd")
    responses = [e for e in events if isinstance(e, ModelResponded)]
    before = [e for e in responses if events.index(e) < events.index(told)]
    spent = sum(e.cost_usd for e in before)
    assert 0 < spent <= 0.03  # no call started that the run could not afford
    assert told.evidence.startswith("the run would spend about $")
    assert f"with ${spent:.4f} of its $0.0300 spent (budget_exceeded:cost_usd)" in told.evidence
    last = responses[-1]
    assert last.response.tool_calls == () and events.index(last) > events.index(told)
    assert "found 1 of yours: order #1002 (espresso grinder) is shipped" in result.output
    assert result.cost_usd == pytest.approx(spent + last.cost_usd)
    assert (result.steps, result.tool_calls) == (len(before) + 1, len(before))
    out = capsys.readouterr().out
    assert f"failed(budget_exceeded:cost_usd) · {result.steps} steps" in out
    assert f"Figures: {told.evidence}" in out
    assert f"Spent in all: ${result.cost_usd:.4f}" in out


def test_a_withdrawn_refund_is_rolled_back_and_voided_once(desk: Desk, capsys: pytest.CaptureFixture[str]) -> None:
    outcome, events = play(rollback, desk)

    result = outcome.result
    assert outcome.ok and (result.status, result.reason) == ("rolled_back", "rolled_back")
    ends = [i for i, e in enumerate(events) if isinstance(e, RunEnded)]
    assert [events[i].status for i in ends] == ["completed", "rolled_back"] and ends[-1] == len(events) - 1
    started, undo, undone = (
        index(events, kind) for kind in (RollbackStarted, CompensationStarted, CompensationFinished)
    )
    assert ends[0] < started < undo < undone < ends[1]  # the compensation is journaled after the run's end
    assert (events[started].by, events[started].why, events[started].calls) == ("supervisor", ROLLBACK_REASON, ("2.1",))
    [refund] = [e for e in events if isinstance(e, ToolCallStarted) and e.name == "issue_refund"]
    assert (refund.call, refund.arguments["order_id"], refund.arguments["amount_usd"]) == ("2.1", "#1003", 64.5)
    finished = events[undone]
    assert finished.call == "2.1" and finished.error is None
    assert (finished.result["voided"], finished.result["void_id"]) == ("R-1", "V-1")
    shop = desk.shop
    assert (shop.refund_count(SMALL_REFUND_ORDER), shop.refund_count(SMALL_REFUND_ORDER, voided=True)) == (0, 1)
    [void] = shop.voids(SMALL_REFUND_ORDER)
    assert void["idempotency_key"] == f"{result.run_id}:2.1:undo"
    with shop.connect() as db:
        assert db.execute("SELECT count(*) FROM refund_voids").fetchone()[0] == 1

    with pytest.raises(ResolveError, match="already rolled back"):
        asyncio.run(desk.agent("rollback").rollback(result.run_id, by="supervisor", reason="again"))
    assert len(shop.voids(SMALL_REFUND_ORDER)) == 1
    out = capsys.readouterr().out
    assert "completed · 3 steps · 3 tool calls" in out and "rolled_back · 3 steps · 3 tool calls" in out
    command = f"keel rollback {result.run_id} --reason '{ROLLBACK_REASON}'"
    assert re.search(rf"^  {re.escape(command)} +runs the compensation of each refund", out, re.M)
    assert "await agent.rollback(run_id, by='supervisor', reason=" in out
    assert f"↩ rollback by supervisor: {ROLLBACK_REASON}" in out
    assert '↩ call 2.1 undone: {"voided":"R-1","void_id":"V-1"' in out
    assert f"A second rollback changes nothing: run {result.run_id} is already rolled back." in out
    assert "Proof: order #1003 in the shop's database: 1 refund, 1 voided (R-1 ($64.50) by void V-1" in out
    assert ", 0 standing. The run is rolled_back" in out
    assert f"keel show {result.run_id}" in out


def test_the_rollback_leaves_the_earlier_tickets_refunds_standing(desk: Desk) -> None:
    approved, _ = play(approval, desk)
    rolled, _ = play(rollback, desk)

    assert approved.ok and rolled.ok and rolled.result.status == "rolled_back"
    assert (desk.shop.refund_count("#1007"), desk.shop.refund_count("#1007", voided=True)) == (1, 0)
    assert (desk.shop.refund_count("#1003"), desk.shop.refund_count("#1003", voided=True)) == (0, 1)


def test_the_printed_keel_rollback_command_undoes_the_refund(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keel.db'}"
    shop = Shop.fresh(tmp_path / SHOP_PATH)
    agent = build_agent(shop=shop, store=url, ticket=BY_KEY["rollback"], ref=REF)

    async def refund() -> str:
        try:
            result = await agent.run(BY_KEY["rollback"].task)
            assert result.status == "completed"
            return result.run_id
        finally:
            await agent.store.close()

    run_id = asyncio.run(refund())
    env = {k: v for k, v in os.environ.items() if k not in ("KEEL_STORE", "FORCE_COLOR", "TTY_COMPATIBLE")}
    rolled = subprocess.run(
        [sys.executable, "-m", "agentkeel.cli", "rollback", run_id, "--reason", ROLLBACK_REASON, "--store", url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout.startswith(f"rolled_back  run {run_id}")
    assert (shop.refund_count("#1003"), shop.refund_count("#1003", voided=True)) == (0, 1)


def test_a_model_that_behaves_needs_no_control_and_the_demo_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    polite = ScriptedModel(lambda request: reply("Could you confirm your order number and email address?"))
    desk = Desk(out=Output(), store=MemoryStore(), shop=Shop.fresh(tmp_path / "shop.db"), model=polite)

    outcomes = [play(story, desk)[0] for story in (approval, spiral, runaway, rollback)]

    assert all(o.ok and o.result.status == "completed" for o in outcomes)
    out = capsys.readouterr().out
    assert "The model asked for no refund above $300, so nothing waited for a person." in out
    assert "The model changed course by itself: the loop policy had nothing to stop." in out
    assert "The model did not run away: the budget was never reached." in out
    assert "The model made no refund, so there is nothing to roll back." in out
    assert "keel rollback " not in out.replace("keel rollback RUN", "")


def test_a_real_models_refund_and_escalation_roll_back_as_far_as_they_can(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def turns(request: ModelRequest) -> ModelResponse:
        if not any(isinstance(m, ToolResultMessage) for m in request.messages):
            return calls(
                ("issue_refund", {"order_id": "#1003", "amount_usd": 64.5, "reason": "pulled thread"}),
                ("escalate_to_human", {"order_id": "#1003", "summary": "refunded; check the stock"}),
            )
        return reply("Refunded, and a colleague will follow up.")

    desk = Desk(out=Output(), store=MemoryStore(), shop=Shop.fresh(tmp_path / "shop.db"), model=ScriptedModel(turns))

    outcome, _ = play(rollback, desk)

    assert outcome.ok  # a real model's story may differ; no refund was repeated
    assert (outcome.result.status, outcome.result.reason) == ("paused", "rollback_incomplete")
    assert (desk.shop.refund_count("#1003"), desk.shop.refund_count("#1003", voided=True)) == (0, 1)
    out = capsys.readouterr().out
    assert "Not everything was undone: " in out
    assert "Proof: order #1003 in the shop's database: 1 refund, 1 voided" in out
