"""A support agent you can run, inspect and resume from the command line, offline:

    keel run examples/support_desk.py:agent "Where is order #1234?"
    keel runs
    keel show <run id>

The tools and the shop's database are the demo's (``agentkeel.demo``); the database is created under
``.keel/examples/`` on first use. The model is scripted, offline and deterministic: it looks up the order the
question names and answers from what the tool returned. With a real model (``keel run ... --model
openai:gpt-4.1-mini``, or any OpenAI-compatible server via ``OPENAI_BASE_URL``) the same agent answers any
question its tools can.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from agentkeel import Agent, ModelRequest, ModelResponse, ScriptedModel, ToolResultMessage, UserMessage, call, reply
from agentkeel.demo.desk import INSTRUCTIONS
from agentkeel.demo.shop import Shop
from agentkeel.demo.tools import TOOLS

ORDER_ID = re.compile(r"#\d{4}\b")


def answer(request: ModelRequest) -> ModelResponse:
    """Look up the order the customer names, then say where it is."""
    question = next(m.text for m in request.messages if isinstance(m, UserMessage))
    results = [m for m in request.messages if isinstance(m, ToolResultMessage)]
    if not results:
        named = ORDER_ID.search(question)
        if named is None:
            return reply("Happy to help! What is your order number? It looks like #1234, on your confirmation email.")
        return call("get_order", order_id=named.group())
    found = results[-1]
    if found.is_error:
        return reply(
            "I can't find that order. Could you check the number on your confirmation email? It looks like #1234."
        )
    return reply(where_it_is(json.loads(found.content)))


def where_it_is(order: dict[str, Any]) -> str:
    name, item, number = order["customer"].split()[0], order["item"].lower(), order["order_id"]
    if order["status"] == "delivered":
        return f"Hi {name}, your {item} (order {number}) was delivered on {order['delivered_on']}."
    if order["status"] == "shipped":
        return (
            f"Hi {name}, your {item} (order {number}) shipped on {order['shipped_on']} with {order['carrier']}, "
            f"tracking number {order['tracking']}; it should arrive within 3 to 5 working days of shipping."
        )
    return f"Hi {name}, your {item} (order {number}) is being prepared and ships within 2 working days."


agent = Agent(
    name="support-desk",
    instructions=INSTRUCTIONS,
    model=ScriptedModel(answer),
    tools=TOOLS,
    deps=Shop(path=Path(".keel/examples/shop.db").absolute()),
    max_steps=6,
)
