"""``keel run --dry-run``, ``keel plan`` and ``keel apply``: a plan printed, approved and carried out."""

from __future__ import annotations

import json

from keel_harness import Keel

DESK = '''
from pathlib import Path

from agentkeel import Agent, ScriptedModel, call, reply, tool

LEDGER = Path(__file__).with_name("ledger.txt")


@tool
def lookup(order_id: str) -> dict:
    """Look an order up."""
    return {"order_id": order_id, "paid": 150.0}


@tool(effect="write", idempotent=False)
def refund(order_id: str, amount: float) -> str:
    """Refund an order."""
    with LEDGER.open("a") as ledger:
        ledger.write(f"refund {order_id} {amount}\\n")
    return "refunded"


@refund.preview
def would_refund(order_id: str, amount: float) -> dict:
    return {"would_refund": amount, "to": "card ending 4242"}


@tool(effect="write")
def send_email(to: str) -> str:
    """Email a customer."""
    with LEDGER.open("a") as ledger:
        ledger.write(f"email {to}\\n")
    return "sent"


agent = Agent(
    name="desk",
    model=ScriptedModel([
        call("lookup", order_id="#1"),
        call("refund", order_id="#1", amount=150.0),
        call("send_email", to="ana@example.com"),
        reply("Refunded and emailed."),
    ]),
    tools=[lookup, refund, send_email],
)
'''


def ledger(keel: Keel) -> list[str]:
    path = keel.root / "ledger.txt"
    return path.read_text().splitlines() if path.exists() else []


def test_a_dry_run_prints_its_plan_and_apply_carries_it_out(keel: Keel) -> None:
    ref = f"{keel.write('desk.py', DESK)}:agent"
    planned = keel("run", ref, "refund #1", "--dry-run")
    assert planned.exit_code == 0, planned.output
    assert "plan: 2 write calls" in planned.output and "card ending 4242" in planned.output
    assert "(no preview" in planned.output and "keel apply" in planned.output
    assert ledger(keel) == []
    [run_id] = keel.run_ids()
    shown = json.loads(keel("plan", run_id, "--json").output)
    assert [(p["tool"], p["has_preview"]) for p in shown] == [("refund", True), ("send_email", False)]
    applied = keel("apply", run_id[:10], "--by", "lead")
    assert applied.exit_code == 0, applied.output
    assert ledger(keel) == ["refund #1 150.0", "email ana@example.com"]
    apply_id = next(r for r in keel.run_ids() if r != run_id)
    assert "applies the plan of" in keel("show", apply_id).output


def test_plan_and_apply_refuse_what_is_not_a_dry_run(keel: Keel) -> None:
    ref = f"{keel.write('desk.py', DESK)}:agent"
    keel("run", ref, "refund #1")
    [run_id] = keel.run_ids()
    assert keel("plan", run_id).exit_code == 2
    refused = keel("apply", run_id)
    assert refused.exit_code == 2 and "not a finished dry run" in refused.output
