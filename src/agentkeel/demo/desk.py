"""The support-desk agent: its instructions, its tools, its shop."""

from __future__ import annotations

from collections.abc import Sequence

from agentkeel.agent import Agent
from agentkeel.demo.shop import Shop
from agentkeel.demo.tickets import Ticket
from agentkeel.demo.tools import TOOLS
from agentkeel.models.base import Model
from agentkeel.models.scripted import ScriptedModel
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


def build_agent(
    *,
    shop: Shop,
    store: Store | str,
    ticket: Ticket,
    model: Model | None = None,
    tools: Sequence[Tool] = TOOLS,
) -> Agent:
    """The desk's agent for one ticket: the scripted model plays that ticket, unless a real model is given."""
    return Agent(
        name=NAME,
        instructions=INSTRUCTIONS,
        model=model if model is not None else ScriptedModel(ticket.script),
        tools=tools,
        deps=shop,
        store=store,
        max_steps=8,
        lease_s=LEASE_S,
    )
