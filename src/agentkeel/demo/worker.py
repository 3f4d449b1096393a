"""The demo's worker: a separate process that takes the refund ticket and dies in the middle of it.

Its refund tool moves the money (a row in the shop's refunds table) and then kills its own process with SIGKILL
before returning, as a crash or a power cut would: no cleanup runs, and the journal holds the call's intent but
no outcome. ``keel demo`` then resumes the run in its own process.

    python -m agentkeel.demo.worker --store sqlite:///.keel/keel.db --shop .keel/demo/shop.db --run-id ID
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from agentkeel.demo.desk import build_agent
from agentkeel.demo.shop import Shop
from agentkeel.demo.tickets import BY_KEY
from agentkeel.demo.tools import TOOLS, AmountUsd, OrderId, issue_refund
from agentkeel.errors import KeelError
from agentkeel.models.resolve import resolve_model
from agentkeel.tools.tool import Tool, ToolContext, tool

TICKET = "refund"


def crash_after_refund(refund: Tool) -> Tool:
    """The refund tool, with the same name and contract, that kills its process once the money has moved."""

    def issue_refund(ctx: ToolContext, order_id: OrderId, amount_usd: AmountUsd, reason: str) -> dict[str, Any]:
        refund.fn(ctx, order_id=order_id, amount_usd=amount_usd, reason=reason)
        os.kill(os.getpid(), signal.SIGKILL)  # the refund is committed; its result never reaches the journal
        raise AssertionError("unreachable: the process is gone")

    issue_refund.__doc__ = refund.fn.__doc__
    return tool(name=refund.name, effect=refund.effect, idempotent=refund.idempotent)(issue_refund)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentkeel.demo.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="the store URL the demo uses")
    parser.add_argument("--shop", required=True, type=Path, help="the shop's database file")
    parser.add_argument("--run-id", required=True, help="the id to give the run, so that the demo can resume it")
    parser.add_argument("--model", default="scripted", help="scripted, or provider:name")
    args = parser.parse_args(argv)
    try:
        model = None if args.model == "scripted" else resolve_model(args.model)
        tools = [crash_after_refund(t) if t is issue_refund else t for t in TOOLS]
        shop = Shop(path=args.shop)
        agent = build_agent(shop=shop, store=args.store, ticket=BY_KEY[TICKET], model=model, tools=tools)
        result = agent.run_sync(BY_KEY[TICKET].task, run_id=args.run_id)
    except KeelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"the worker was not killed: the run ended {result.status}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
