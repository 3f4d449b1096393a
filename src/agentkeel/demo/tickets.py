"""The tickets the desk handles, and the scripted model's side of each conversation.

Each script is a function of the conversation so far, as a real model's answer is: it reads the tool results in
the request and decides what to say or call next. That is also what makes a resumed run get the same turns.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentkeel.core.budget import Budget
from agentkeel.core.messages import ModelRequest, ModelResponse, ToolResultMessage
from agentkeel.models.scripted import calls, reply

Script = Callable[[ModelRequest], ModelResponse]


@dataclass(frozen=True, kw_only=True)
class Ticket:
    key: str
    title: str
    """What the ticket shows, as a heading."""
    task: str
    """The customer's message, verbatim."""
    script: Script
    """The scripted model's side of the conversation."""
    budget: Budget | None = None
    """What the ticket's run may spend (none: only ``max_steps`` bounds it)."""
    max_steps: int = 8


def results(request: ModelRequest) -> list[ToolResultMessage]:
    return [m for m in request.messages if isinstance(m, ToolResultMessage)]


def last(request: ModelRequest, name: str) -> ToolResultMessage | None:
    found = [m for m in results(request) if m.name == name]
    return found[-1] if found else None


def data(message: ToolResultMessage | None) -> Any:
    if message is None or message.is_error:
        return None
    try:
        return json.loads(message.content)
    except ValueError:
        return message.content


def first_name(order: dict[str, Any]) -> str:
    return str(order["customer"]).split()[0]


def status_question(request: ModelRequest) -> ModelResponse:
    order = data(last(request, "get_order"))
    if order is None:
        return calls(("get_order", {"order_id": "#1001"}), text="Let me look up order #1001.")
    return reply(
        f"Hi {first_name(order)}, your {order['item'].lower()} (order #1001) left our warehouse on "
        f"{order['shipped_on']} with {order['carrier']}, tracking number {order['tracking']}. Parcels usually arrive "
        "3 to 5 working days after shipping, so it should be with you within the next few days."
    )


def flaky_carrier(request: ModelRequest) -> ModelResponse:
    order = data(last(request, "get_order"))
    if order is None:
        return calls(("get_order", {"order_id": "#1002"}), text="Let me look up order #1002.")
    tracking = last(request, "track_shipment")
    if tracking is None:
        return calls(
            ("track_shipment", {"order_id": "#1002"}),
            text=f"It shipped on {order['shipped_on']}. I'll ask the carrier for the latest scans.",
        )
    found = data(tracking)
    if found is None:
        return reply(
            "I'm sorry: the carrier's tracking service is not answering right now. I've noted your order and will "
            "check again within the hour."
        )
    latest = found["scans"][-1]
    return reply(
        f"Thanks for your patience, {first_name(order)}. The carrier's latest scan of parcel {found['tracking']} "
        f"({latest['on']}, {latest['where']}): {latest['what']}. It was {found['next']}, so your grinder should "
        "arrive tomorrow."
    )


def bad_argument(request: ModelRequest) -> ModelResponse:
    looked_up = last(request, "get_order")
    if looked_up is None:
        return calls(("get_order", {"order_id": "1003"}), text="Looking up order 1003.")
    if looked_up.is_error:
        return calls(("get_order", {"order_id": "#1003"}), text="Order numbers need their leading '#': trying #1003.")
    order = data(looked_up)
    return reply(
        f"Hi {first_name(order)}, order #1003 (your {order['item'].lower()}) was delivered on "
        f"{order['delivered_on']}. If it hasn't reached you, let me know and I'll open an investigation with "
        f"{order['carrier']}."
    )


def refund_outside_policy(request: ModelRequest) -> ModelResponse:
    order = data(last(request, "get_order"))
    if order is None:
        return calls(
            ("get_order", {"order_id": "#1004"}),
            ("read_policy", {"topic": "refunds"}),
            text="Let me check the order and our refund policy.",
        )
    refund = last(request, "issue_refund")
    if refund is None:
        return calls(
            (
                "issue_refund",
                {"order_id": "#1004", "amount_usd": order["amount_usd"], "reason": "kettle stopped working"},
            ),
            text="A faulty kettle qualifies; I'll refund it in full.",
        )
    escalation = data(last(request, "escalate_to_human"))
    if refund.is_error and escalation is None:
        summary = (
            f"{order['customer']} reports that the electric kettle from order #1004 (${order['amount_usd']:.2f}) "
            f"stopped working. Delivered {order['delivered_on']}, outside the 30-day refund window, so the refund "
            "was refused. Please decide on a repair or a goodwill credit."
        )
        return calls(
            ("escalate_to_human", {"order_id": "#1004", "summary": summary}),
            text="The refund was refused: the order is past the 30-day window. I'll hand it to a colleague.",
        )
    return reply(
        f"I'm sorry your kettle stopped working, {first_name(order)}. It was delivered on {order['delivered_on']}, "
        "which is past our 30-day refund window, so I can't refund it myself. I've passed your case to a colleague "
        f"in customer care (reference {escalation['escalation_id']}), who can offer a repair or a credit; they will "
        f"reply within {escalation['reply_within']}."
    )


def refund(request: ModelRequest) -> ModelResponse:
    order = data(last(request, "get_order"))
    if order is None:
        return calls(
            ("get_order", {"order_id": "#1005"}),
            ("read_policy", {"topic": "refunds"}),
            text="Let me check the order and our refund policy.",
        )
    done = last(request, "issue_refund")
    if done is None:
        return calls(
            (
                "issue_refund",
                {"order_id": "#1005", "amount_usd": order["amount_usd"], "reason": "arrived with a cracked screen"},
            ),
            text=f"Delivered {order['delivered_on']} and damaged: that qualifies for a full refund.",
        )
    receipt = data(done)
    if receipt is None:
        return reply(f"I couldn't complete the refund ({done.content}); I've asked a colleague to finish it.")
    return reply(
        f"I'm so sorry the screen arrived cracked, {first_name(order)}. I've refunded ${receipt['amount_usd']:.2f} "
        f"for order #1005 (refund {receipt['refund_id']}); it reaches your card in 3-5 working days. No need to send "
        "the monitor back."
    )


TICKETS: tuple[Ticket, ...] = (
    Ticket(
        key="status",
        title="A status question",
        task="Hi, I ordered a desk lamp last week (order #1001). Where is it? - Ana",
        script=status_question,
    ),
    Ticket(
        key="flaky",
        title="The carrier's API is flaky: retries recover",
        task="My order #1002 says shipped but the tracking page hasn't moved in days. Can you check? - Ben",
        script=flaky_carrier,
    ),
    Ticket(
        key="bad-argument",
        title="A bad argument, corrected after an actionable error",
        task="What's the status of order 1003? Thanks, Chloé",
        script=bad_argument,
    ),
    Ticket(
        key="outside-policy",
        title="A refund the policy refuses: the tool says no, the agent escalates",
        task="The kettle from order #1004 stopped working. I want my money back. - Dev",
        script=refund_outside_policy,
    ),
    Ticket(
        key="refund",
        title="A refund, a crash and a resume: the money moves once",
        task="My monitor (order #1005) arrived with a cracked screen. Please refund it. - Eva",
        script=refund,
    ),
)

BY_KEY = {ticket.key: ticket for ticket in TICKETS}
