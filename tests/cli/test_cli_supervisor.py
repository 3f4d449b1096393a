"""A supervisor from the command line: a subagent's held call is listed with its parent, and approving it
resumes the supervisor, which resumes the subagent."""

from __future__ import annotations

from keel_harness import Keel

TREE = '''
from pathlib import Path

from agentkeel import Agent, ScriptedModel, call, reply, require_approval, tool

LEDGER = Path(__file__).with_name("ledger.txt")


@tool(effect="write", idempotent=True)
def issue_refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    with LEDGER.open("a") as ledger:
        ledger.write(f"refund {order_id} {amount}\\n")
    return "refunded"


refunder = Agent(
    name="refunder",
    model=ScriptedModel([call("issue_refund", order_id="#1", amount=150.0), reply("Refunded #1.")]),
    tools=[issue_refund],
    gates=[require_approval("issue_refund", why="every refund")],
)
agent = Agent(
    name="lead",
    model=ScriptedModel([call("delegate_to_refunder", task="Refund #1: $150"), reply("Done: #1 refunded.")]),
    subagents=[refunder],
)
'''


def test_approving_a_subagents_call_resumes_its_supervisor(keel: Keel) -> None:
    ref = f"{keel.write('tree.py', TREE)}:agent"
    started = keel("run", ref, "refund #1")
    assert started.exit_code == 3 and "waiting_for_subagent" in started.output, started.output
    [lead] = [r for r in keel.run_ids() if "." not in r]
    child = f"{lead}.1.1"
    listed = keel("approvals")
    assert f"{child} (child of {lead})" in listed.output and "every refund" in listed.output
    approved = keel("approve", child, "1.1")
    assert approved.exit_code == 0, approved.output
    assert "resuming" in approved.output and "Done: #1 refunded." in approved.output
    assert (keel.root / "ledger.txt").read_text().splitlines() == ["refund #1 150.0"]
