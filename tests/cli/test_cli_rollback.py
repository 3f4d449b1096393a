"""``keel rollback``: a run's refunds undone, last first, and shown in ``keel show``."""

from __future__ import annotations

from keel_harness import Keel

BANK = '''
from pathlib import Path

from agentkeel import Agent, ScriptedModel, ToolContext, call, reply, tool

LEDGER = Path(__file__).with_name("ledger.txt")


@tool(effect="write", idempotent=True)
def refund(ctx: ToolContext, order_id: str) -> dict:
    """Refund an order."""
    with LEDGER.open("a") as ledger:
        ledger.write(f"refund {order_id}\\n")
    return {"refund_id": ctx.idempotency_key}


@refund.compensate
def void(order_id: str, result: dict) -> str:
    with LEDGER.open("a") as ledger:
        ledger.write(f"void {order_id}\\n")
    return f"voided {result['refund_id']}"


@tool(effect="write")
def note_crm(order_id: str) -> str:
    """Write to the CRM (no undo)."""
    return "noted"


agent = Agent(
    name="bank",
    model=ScriptedModel([call("refund", order_id="#1"), call("refund", order_id="#2"), reply("Refunded.")]),
    tools=[refund, note_crm],
)
'''


def ledger(keel: Keel) -> list[str]:
    path = keel.root / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_rollback_undoes_a_run_and_show_tells_it(keel: Keel) -> None:
    ref = f"{keel.write('bank.py', BANK)}:agent"
    assert keel("run", ref, "refund both").exit_code == 0
    [run_id] = keel.run_ids()
    result = keel("rollback", run_id[:10], "--reason", "customer withdrew")
    assert result.exit_code == 0, result.output
    assert "rolled_back" in result.output
    assert ledger(keel) == ["refund #1", "refund #2", "void #2", "void #1"]
    shown = keel("show", run_id).output
    assert "rollback" in shown and "customer withdrew" in shown and "↩ undone" in shown
    again = keel("rollback", run_id)
    assert again.exit_code == 2 and "already rolled back" in again.output
    assert len(ledger(keel)) == 4


def test_rollback_of_a_run_without_effects_says_so(keel: Keel) -> None:
    quiet = BANK.replace('call("refund", order_id="#1"), call("refund", order_id="#2"), ', "")
    ref = f"{keel.write('bank.py', quiet)}:agent"
    assert keel("run", ref, "nothing").exit_code == 0
    [run_id] = keel.run_ids()
    result = keel("rollback", run_id)
    assert result.exit_code == 2 and "no finished write call to undo" in result.output
