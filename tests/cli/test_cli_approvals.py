"""``keel approvals``, ``keel approve`` and ``keel reject``: held calls listed across runs, decided one by one."""

from __future__ import annotations

import json

from keel_harness import Keel

REFUNDS = '''
from pathlib import Path

from agentkeel import Agent, ScriptedModel, calls, reply, require_approval, tool

LEDGER = Path(__file__).with_name("refunds.txt")


@tool(effect="write", idempotent=False)
def refund(order_id: str, amount: float) -> dict:
    """Refund an order."""
    with LEDGER.open("a") as ledger:
        ledger.write(f"{order_id} {amount}\\n")
    return {"refunded": amount}


agent = Agent(
    name="desk",
    model=ScriptedModel([
        calls(("refund", {"order_id": "#1", "amount": 150.0}), ("refund", {"order_id": "#2", "amount": 20.0}),
              ("refund", {"order_id": "#3", "amount": 500.0})),
        reply("Done."),
    ]),
    tools=[refund],
    gates=[require_approval("refund", when=lambda args: args["amount"] > 100, why="refunds above $100")],
)
'''


def refunds(keel: Keel) -> list[str]:
    path = keel.root / "refunds.txt"
    return path.read_text().splitlines() if path.exists() else []


def start(keel: Keel) -> str:
    ref = f"{keel.write('desk.py', REFUNDS)}:agent"
    result = keel("run", ref, "refund the three orders")
    assert result.exit_code == 3, result.output  # paused: a person must act
    assert "awaiting_approval" in result.output
    [run_id] = keel.run_ids()
    return run_id


def test_held_calls_are_listed_and_decided_one_by_one_then_the_run_resumes(keel: Keel) -> None:
    run_id = start(keel)
    assert refunds(keel) == ["#2 20.0"]  # the call under the threshold ran
    listed = keel("approvals")
    assert listed.exit_code == 0
    assert "call 1.1: refund" in listed.output and "call 1.3: refund" in listed.output
    assert "refunds above $100" in listed.output and run_id in listed.output
    as_json = json.loads(keel("approvals", "--json").output)
    assert [(item["call"], item["arguments"]["amount"]) for item in as_json] == [("1.1", 150.0), ("1.3", 500.0)]

    first = keel("approve", run_id[:8], "1.1")
    assert first.exit_code == 0, first.output
    assert "still waits for decisions about: 1.3" in first.output
    assert refunds(keel) == ["#2 20.0"]  # nothing runs before the last decision

    last = keel("reject", run_id, "1.3", "--reason", "needs a manager")
    assert last.exit_code == 0, last.output
    assert "completed" in last.output
    assert refunds(keel) == ["#2 20.0", "#1 150.0"]
    assert keel("approvals").output.strip() == "no calls are waiting for approval"
    finished = [e for e in keel.events(run_id) if e.kind == "tool_call_finished" and e.call == "1.3"]
    assert "needs a manager" in finished[0].content


def test_approve_with_edited_arguments_checks_them_against_the_tool(keel: Keel) -> None:
    run_id = start(keel)
    bad = keel("approve", run_id, "1.1", "--args", '{"order_id": "#1", "amount": "lots"}')
    assert bad.exit_code == 2 and "amount" in bad.output
    not_json = keel("approve", run_id, "1.1", "--args", "{amount: 1}")
    assert not_json.exit_code == 2 and "not valid JSON" in not_json.output
    assert keel("approve", run_id, "1.1", "--args", '{"order_id": "#1", "amount": 100}').exit_code == 0
    keel("reject", run_id, "1.3", "--reason", "no")
    assert refunds(keel) == ["#2 20.0", "#1 100.0"]


def test_deciding_a_call_that_is_not_held_says_which_are(keel: Keel) -> None:
    run_id = start(keel)
    wrong = keel("approve", run_id, "1.2")
    assert wrong.exit_code == 2
    assert "not waiting for approval (calls waiting: 1.1, 1.3)" in wrong.output
    no_reason = keel("reject", run_id, "1.1")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output


def test_no_resume_records_the_decision_and_leaves_the_run_paused(keel: Keel) -> None:
    run_id = start(keel)
    keel("approve", run_id, "1.1", "--no-resume")
    result = keel("approve", run_id, "1.3", "--no-resume")
    assert "keel resume" in result.output
    assert refunds(keel) == ["#2 20.0"]
    resumed = keel("resume", run_id)
    assert resumed.exit_code == 0, resumed.output
    assert refunds(keel) == ["#2 20.0", "#1 150.0", "#3 500.0"]
