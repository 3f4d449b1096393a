"""A supervisor that looks into a customer's problem with a read-only researcher and hands the refund to an action
subagent, offline:

    keel run examples/supervisor.py:agent "Order #1005 arrived with a cracked screen. Can I get my money back?"
    keel runs                  # the supervisor's run and its two children (<run id>.1.1, <run id>.2.1)
    keel show <run id>         # the delegations; keel show <run id>.2.1 shows the refund itself

The supervisor holds read tools only: it can look an order up, but only the refunder can move money, and the
refunder has nothing else. Each delegation is a child run with its own journal, charged to the supervisor's
budget; a crash anywhere in the tree resumes from the journals (`keel resume <run id>`). The models are scripted
and deterministic; the shop's database is the demo's, created under ``.keel/examples/`` on first use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agentkeel import Agent, Budget, ModelRequest, ModelResponse, ScriptedModel, ToolResultMessage, call, calls, reply
from agentkeel.demo.shop import Shop
from agentkeel.demo.tools import get_order, issue_refund, read_policy

ORDER_ID = re.compile(r"#\d{4}\b")
AMOUNT = re.compile(r"\$(\d+(?:\.\d+)?)")


def results(request: ModelRequest) -> list[ToolResultMessage]:
    return [m for m in request.messages if isinstance(m, ToolResultMessage)]


def task_of(request: ModelRequest) -> str:
    return request.messages[0].text  # type: ignore[union-attr]


def research(request: ModelRequest) -> ModelResponse:
    """The researcher: the order and the refund policy, then a verdict with the amount."""
    seen = results(request)
    order_id = ORDER_ID.search(task_of(request))
    if order_id is None:
        return reply("The task names no order number (#1234): I cannot look anything up.")
    if not seen:
        return calls(("get_order", {"order_id": order_id.group()}), ("read_policy", {"topic": "refunds"}))
    found = next(m for m in seen if m.name == "get_order")  # the two reads finish in either order
    if found.is_error:
        return reply(f"No order {order_id.group()} in the shop: {found.content}")
    order = json.loads(found.content)
    eligible = order["status"] == "delivered"
    return reply(
        f"Order {order['order_id']} ({order['item']}, ${order['amount_usd']:.2f}) was {order['status']}"
        + (", so a damaged item qualifies for a full refund under the policy." if eligible else ": no refund yet.")
    )


def refund(request: ModelRequest) -> ModelResponse:
    """The refunder: the one refund it is asked for, then the receipt."""
    seen = results(request)
    task = task_of(request)
    if not seen:
        amount = AMOUNT.search(task)
        order_id = ORDER_ID.search(task)
        if amount is None or order_id is None:
            return reply("The task must name the order (#1234) and the amount ($12.34): nothing refunded.")
        return call(
            "issue_refund", order_id=order_id.group(), amount_usd=float(amount.group(1)), reason="arrived damaged"
        )
    receipt = seen[-1]
    if receipt.is_error:
        return reply(f"The refund did not go through: {receipt.content}")
    done = json.loads(receipt.content)
    return reply(
        f"Refunded: refund {done['refund_id']} of ${done['amount_usd']:.2f} for order {done['order_id']}, "
        f"{done['status']}."
    )


def lead(request: ModelRequest) -> ModelResponse:
    """The supervisor: research first, then the refund if the research says it qualifies, then the answer."""
    seen = results(request)
    order_id = ORDER_ID.search(task_of(request))
    if order_id is None:
        return reply("Happy to help! What is your order number? It looks like #1234.")
    if not seen:
        return call(
            "delegate_to_researcher",
            task=f"Look up order {order_id.group()} and our refund policy: does a damaged item qualify, for how much?",
        )
    if len(seen) == 1:
        verdict = seen[0].content
        amount = AMOUNT.search(verdict)
        if seen[0].is_error or "qualifies" not in verdict or amount is None:
            return reply(f"I looked into it: {verdict} A colleague will follow up.")
        return call("delegate_to_refunder", task=f"Refund order {order_id.group()}: ${amount.group(1)}, damaged.")
    done = seen[-1].content.removeprefix("Refunded: ")
    return reply(f"Sorry about the damage! {done[:1].upper()}{done[1:]}")


SHOP = Shop(path=Path(".keel/examples/shop.db").absolute())

researcher = Agent(
    name="researcher",
    description="looks orders and policies up; changes nothing",
    model=ScriptedModel(research),
    tools=[get_order, read_policy],
    deps=SHOP,
)
refunder = Agent(
    name="refunder",
    description="issues one refund it is asked for",
    model=ScriptedModel(refund),
    tools=[issue_refund],
    deps=SHOP,
)
agent = Agent(
    name="support-lead",
    instructions="Decompose the customer's problem; research with the researcher; refunds only through the refunder.",
    model=ScriptedModel(lead),
    tools=[get_order],
    subagents=[researcher, refunder],
    budget=Budget(model_calls=20, cost_usd=1.0),
    deps=SHOP,
)
