"""The agent that ``keel approve`` and ``keel resume`` load to continue the demo's held refund.

The refund ticket's run records ``agentkeel.demo.supervisor:agent`` as where its agent is defined, so that the
command the demo prints works from a shell, in the directory the demo ran in (where its shop is):

    keel approve RUN 2.1          # add --model provider:name if the demo ran with one
"""

from __future__ import annotations

from agentkeel.demo.control_tickets import BY_KEY
from agentkeel.demo.desk import build_agent
from agentkeel.demo.shop import SHOP_PATH, Shop

REF = "agentkeel.demo.supervisor:agent"

agent = build_agent(shop=Shop(path=SHOP_PATH), store=None, ticket=BY_KEY["approval"], ref=REF)
"""The desk on the refund ticket; the store is the one the command names (``--store`` or ``KEEL_STORE``)."""
