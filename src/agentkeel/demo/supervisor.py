"""The agent that ``keel approve`` and ``keel resume`` load to continue the demo's held refund, and that
``keel rollback`` loads to undo the withdrawn one (the compensations live in its tools).

Those tickets' runs record ``agentkeel.demo.supervisor:agent`` as where their agent is defined, so that the
commands the demo prints work from a shell, in the directory the demo ran in (where its shop is):

    keel approve RUN 2.1          # add --model provider:name if the demo ran with one
    keel rollback RUN --reason TEXT
"""

from __future__ import annotations

from agentkeel.demo.control_tickets import BY_KEY
from agentkeel.demo.desk import build_agent
from agentkeel.demo.shop import SHOP_PATH, Shop

REF = "agentkeel.demo.supervisor:agent"

agent = build_agent(shop=Shop(path=SHOP_PATH), store=None, ticket=BY_KEY["approval"], ref=REF)
"""The desk on the large refund's ticket; the store is the one the command names (``--store`` or ``KEEL_STORE``).
A rollback calls no model, so the same agent undoes the small refund's run."""
