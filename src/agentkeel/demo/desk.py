"""The support-desk agent: its instructions, its tools, its gate, its shop."""

from __future__ import annotations

from collections.abc import Sequence

from agentkeel.agent import Agent
from agentkeel.demo.shop import Shop
from agentkeel.demo.tickets import Ticket
from agentkeel.demo.tools import TOOLS
from agentkeel.gates import require_approval
from agentkeel.models.base import Model
from agentkeel.models.scripted import ScriptedModel
from agentkeel.pricing import Price, PriceTable
from agentkeel.stores.base import Store
from agentkeel.tools.tool import Tool

NAME = "support-desk"

INSTRUCTIONS = """You are the customer-support desk of a small online shop.
Look orders up before you answer; never guess a date or an amount.
Read the refund policy before you promise a refund; the refund tool enforces it.
When you cannot settle a case yourself, escalate it to a person with a summary they can act on.
Answer the customer in a few friendly sentences."""

LEASE_S = 1.0
"""A short lease: when the demo's worker is killed, its run can be taken over a second later."""

APPROVAL_OVER_USD = 300
"""Refunds above this amount wait for a supervisor (``keel approve``); smaller ones the desk issues itself."""

GATES = (
    require_approval(
        "issue_refund",
        when=lambda args: args["amount_usd"] > APPROVAL_OVER_USD,
        why=f"refunds above ${APPROVAL_OVER_USD} need a supervisor's approval",
    ),
)

SCRIPTED_PRICE = Price(input=3.0, output=15.0)
"""What the scripted model is charged, per million tokens, on a ticket with a budget: a mid-size hosted model's
price, so that a cost limit has something to count (offline, nothing is paid)."""


def build_agent(
    *,
    shop: Shop,
    store: Store | str | None,
    ticket: Ticket,
    model: Model | None = None,
    tools: Sequence[Tool] = TOOLS,
    ref: str = "",
) -> Agent:
    """The desk's agent for one ticket: the scripted model plays that ticket, unless a real model is given.

    ``ref`` says where ``keel approve`` or ``keel resume`` can load the same agent from (``module:name``)."""
    priced = ticket.budget is not None and model is None
    return Agent(
        name=NAME,
        instructions=INSTRUCTIONS,
        model=model if model is not None else ScriptedModel(ticket.script),
        tools=tools,
        deps=shop,
        store=store,
        max_steps=ticket.max_steps,
        lease_s=LEASE_S,
        gates=GATES,
        budget=ticket.budget,
        prices=PriceTable().with_prices(scripted=SCRIPTED_PRICE) if priced else None,
        ref=ref,
    )
