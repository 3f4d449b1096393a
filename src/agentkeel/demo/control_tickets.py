"""The tickets that show the desk's controls, and the scripted model's side of each.

6. a refund above the desk's approval limit: the gate holds the call, the run pauses for a supervisor, who
   approves; the resumed run issues the refund once;
7. a spiral: the model looks the same wrong order number up again and again; it is told to change course, does
   not, and the run is stopped ``failed(loop_detected)``;
8. a runaway: the model reads the order book one order at a time instead of listing the customer's orders; the
   run's cost budget stops it, after one last turn without tools to answer the customer;
9. a refund rolled back: the desk refunds a small order itself; the customer then withdraws, and a supervisor
   rolls the run back: the refund's compensation voids it in the shop's database.

Like a real model's, each script is a function of the conversation so far.
"""

from __future__ import annotations

from agentkeel.core.budget import Budget
from agentkeel.core.messages import ModelRequest, ModelResponse, UserMessage
from agentkeel.demo.tickets import Ticket, data, first_name, last, results
from agentkeel.models.scripted import calls, reply

SPIRAL_ORDER = "#1060"
"""The order number the spiralling customer gives: a typo for #1006, which the shop cannot know."""
RUNAWAY_FIRST_ORDER = 1001
RUNAWAY_BUDGET = Budget(cost_usd=0.03, wrap_up=True)
"""The runaway ticket's limit: three cents, with one last turn to answer the customer when it is reached."""
SMALL_REFUND_ORDER = "#1003"
"""The order refunded, then rolled back: under the approval limit, so the desk refunds it without a person."""
WITHDRAWAL = (
    "Please cancel that refund: my sister fixed the pulled thread in two minutes and I'm keeping the throw. "
    "Sorry for the trouble! - Chloé"
)
"""What the customer of the rolled-back refund writes next."""


def large_refund(request: ModelRequest) -> ModelResponse:
    order = data(last(request, "get_order"))
    if order is None:
        return calls(
            ("get_order", {"order_id": "#1007"}),
            ("read_policy", {"topic": "refunds"}),
            text="Let me check the order and our refund policy.",
        )
    done = last(request, "issue_refund")
    if done is None:
        return calls(
            (
                "issue_refund",
                {"order_id": "#1007", "amount_usd": order["amount_usd"], "reason": "gas lift failed in a week"},
            ),
            text=f"Delivered {order['delivered_on']} and faulty: that qualifies for a full refund.",
        )
    receipt = data(done)
    if receipt is None:  # refused, or rejected by the supervisor
        return reply(
            f"I'm sorry, {first_name(order)}: I couldn't refund your chair myself ({done.content}). A colleague in "
            "customer care will contact you within 1 working day."
        )
    return reply(
        f"Thank you for your patience, {first_name(order)}. A supervisor approved your refund: "
        f"${receipt['amount_usd']:.2f} for order #1007 (refund {receipt['refund_id']}) reaches your card in 3-5 "
        "working days. We'll email you a prepaid label to send the chair back."
    )


def small_refund(request: ModelRequest) -> ModelResponse:
    order = data(last(request, "get_order"))
    if order is None:
        return calls(
            ("get_order", {"order_id": SMALL_REFUND_ORDER}),
            ("read_policy", {"topic": "refunds"}),
            text="Let me check the order and our refund policy.",
        )
    done = last(request, "issue_refund")
    if done is None:
        return calls(
            (
                "issue_refund",
                {"order_id": SMALL_REFUND_ORDER, "amount_usd": order["amount_usd"], "reason": "arrived damaged"},
            ),
            text=f"Delivered {order['delivered_on']} with a flaw: that qualifies for a full refund.",
        )
    receipt = data(done)
    if receipt is None:
        return reply(
            f"I'm sorry, {first_name(order)}: I couldn't refund your throw myself ({done.content}). A colleague in "
            "customer care will contact you within 1 working day."
        )
    return reply(
        f"Done, {first_name(order)}: ${receipt['amount_usd']:.2f} for order {SMALL_REFUND_ORDER} (refund "
        f"{receipt['refund_id']}) reaches your card in 3-5 working days. No need to send the throw back."
    )


def spiral(request: ModelRequest) -> ModelResponse:
    tries = [m for m in results(request) if m.name == "get_order"]
    told = any(isinstance(m, UserMessage) for m in request.messages[1:])  # the engine spoke up
    if not tries:
        text = f"Let me look up order {SPIRAL_ORDER}."
    elif told:
        text = f"The order must exist: trying {SPIRAL_ORDER} once more."
    else:
        text = f"Let me try {SPIRAL_ORDER} again."
    return calls(("get_order", {"order_id": SPIRAL_ORDER}), text=text)


def runaway(request: ModelRequest) -> ModelResponse:
    looked = [m for m in results(request) if m.name == "get_order"]
    if not request.tools:  # the budget's last turn: an answer, no calls
        found = [data(m) for m in looked]
        mine = [o for o in found if isinstance(o, dict) and o.get("email") == "ben@example.com"]
        listed = "; ".join(f"order {o['order_id']} ({o['item'].lower()}) is {o['status']}" for o in mine)
        return reply(
            f"Hi Ben, I've gone through {len(looked)} orders so far and found {len(mine)} of yours: "
            f"{listed or 'none yet'}. I couldn't finish checking the rest; a colleague will complete the check "
            "and email you today."
        )
    text = "" if looked else "I'll go through the order book one order at a time and pick out yours."
    return calls(("get_order", {"order_id": f"#{RUNAWAY_FIRST_ORDER + len(looked)}"}), text=text)


CONTROL_TICKETS: tuple[Ticket, ...] = (
    Ticket(
        key="approval",
        title="A refund above the limit waits for a supervisor",
        task="The office chair from order #1007 lost its gas lift within a week. I'd like a refund. - Femi",
        script=large_refund,
    ),
    Ticket(
        key="spiral",
        title="A spiral: told once, then stopped",
        task=f"My lamp shade (order {SPIRAL_ORDER}) still hasn't shipped. What's going on? - Ana",
        script=spiral,
    ),
    Ticket(
        key="runaway",
        title="A runaway stopped by its budget",
        task="Can you check all my orders and tell me if any is running late? I'm ben@example.com. - Ben",
        script=runaway,
        budget=RUNAWAY_BUDGET,
        max_steps=25,
    ),
    Ticket(
        key="rollback",
        title="A refund rolled back",
        task=f"My wool throw (order {SMALL_REFUND_ORDER}) arrived with a pulled thread. Could I get a refund? - Chloé",
        script=small_refund,
    ),
)

BY_KEY = {ticket.key: ticket for ticket in CONTROL_TICKETS}
