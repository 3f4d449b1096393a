"""The support desk's tools. Each takes the run context first and finds the shop in ``ctx.deps``.

The refund policy is enforced here, in the tool, whatever the model decides: a refund over the amount paid, or
outside the refund window, is refused with a message that tells the model what to do instead. Refunds and
escalations pass ``ctx.idempotency_key`` to the database, whose unique key makes a repeated call a no-op.

A refund has an undo, for a rollback: ``void_refund`` voids it (a voided refund no longer counts against what is
left to refund), once, under the key the rollback gives it.
"""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import Field

from agentkeel.demo.shop import REFUND_WINDOW_DAYS, Shop
from agentkeel.errors import ToolError
from agentkeel.tools.tool import Tool, ToolContext, tool

OrderId = Annotated[
    str, Field(pattern=r"^#\d{4}$", examples=["#1234"], description="The order number: '#' and four digits.")
]
Email = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", examples=["ana@example.com"])]
AmountUsd = Annotated[float, Field(gt=0, le=100_000, description="The amount to refund, in US dollars.")]
Topic = Literal["refunds", "shipping", "returns"]


def shop_of(ctx: ToolContext) -> Shop:
    if not isinstance(ctx.deps, Shop):
        raise RuntimeError("the support-desk tools need the shop as deps: Agent(deps=Shop(path=...))")
    return ctx.deps


def _order(db: sqlite3.Connection, order_id: str) -> dict[str, Any]:
    row = db.execute(
        "SELECT o.*, c.name AS customer, coalesce((SELECT sum(amount_usd) FROM refunds r "
        "WHERE r.order_id = o.order_id AND r.refund_id NOT IN (SELECT refund_id FROM refund_voids)), 0) "
        "AS refunded_usd FROM orders o JOIN customers c USING (email) WHERE o.order_id = ?",
        (order_id,),
    ).fetchone()
    if row is None:
        raise ToolError(
            f"There is no order {order_id}. Check the number with the customer, or look their orders up with "
            "get_customer_orders(email)."
        )
    return dict(row)


@tool
def get_order(ctx: ToolContext, order_id: OrderId) -> dict[str, Any]:
    """Look an order up: the customer, the item, the amount paid, its status and shipping dates, refunds so far.

    Args:
        order_id: The order number, e.g. #1234.
    """
    with shop_of(ctx).connect() as db:
        return _order(db, order_id)


@tool
def get_customer_orders(ctx: ToolContext, email: Email) -> list[dict[str, Any]]:
    """List a customer's orders, most recent first, by the email address they ordered with."""
    with shop_of(ctx).connect() as db:
        rows = db.execute(
            "SELECT order_id, item, amount_usd, status, ordered_on FROM orders WHERE email = ? "
            "ORDER BY ordered_on DESC",
            (email.lower(),),
        ).fetchall()
    if not rows:
        raise ToolError(f"No customer has the email {email}. Ask the customer for the address they ordered with.")
    return [dict(row) for row in rows]


@tool
def read_policy(ctx: ToolContext, topic: Topic) -> str:
    """Read the shop's policy on a topic before promising anything to a customer."""
    with shop_of(ctx).connect() as db:
        row = db.execute("SELECT text FROM policies WHERE topic = ?", (topic,)).fetchone()
    return str(row["text"])


@tool(retries=2, retry_on=(ConnectionError,), backoff=0.1)
def track_shipment(ctx: ToolContext, order_id: OrderId) -> dict[str, Any]:
    """Ask the carrier where a shipped order's parcel is now: its latest scans and the expected delivery date."""
    shop = shop_of(ctx)
    with shop.connect() as db:
        order = _order(db, order_id)
        if not order["tracking"]:
            raise ToolError(f"Order {order_id} has not shipped yet (status: {order['status']}); nothing to track.")
        count = db.execute(
            "INSERT INTO carrier_requests (tracking, count) VALUES (?, 1) "
            "ON CONFLICT (tracking) DO UPDATE SET count = count + 1 RETURNING count",
            (order["tracking"],),
        ).fetchone()[0]
    if count <= shop.carrier_failures:
        raise ConnectionError(f"api.parcelo.example: connection reset while fetching {order['tracking']}")
    shipped = date.fromisoformat(order["shipped_on"])
    scans = [
        {"on": shipped.isoformat(), "where": "Parcelo hub, Bristol", "what": "collected from the shop"},
        {"on": shop.today.isoformat(), "where": "Parcelo depot, Leeds", "what": "held: address label unreadable"},
    ]
    if order["delivered_on"]:
        scans.append({"on": order["delivered_on"], "where": "customer's address", "what": "delivered"})
    return {
        "order_id": order_id,
        "carrier": order["carrier"],
        "tracking": order["tracking"],
        "scans": scans,
        "next": "relabelled today; out for delivery tomorrow" if not order["delivered_on"] else "delivered",
    }


@tool(effect="write", idempotent=True)
def issue_refund(ctx: ToolContext, order_id: OrderId, amount_usd: AmountUsd, reason: str) -> dict[str, Any]:
    """Refund a delivered order to the customer's card, within the refund policy (read it first).

    Args:
        order_id: The order number, e.g. #1234.
        amount_usd: How much to refund; at most what was paid, minus earlier refunds.
        reason: Why, in a few words, for the customer's record.
    """
    shop = shop_of(ctx)
    with shop.connect() as db:
        done = db.execute(
            "SELECT refund_id, order_id, amount_usd, reason FROM refunds WHERE idempotency_key = ?",
            (ctx.idempotency_key,),
        ).fetchone()
        if done is not None:  # this very call already moved the money: answer as it did
            return _receipt(dict(done))
        order = _order(db, order_id)
        _check_refund(order, amount_usd, shop.today)
        db.execute(
            "INSERT INTO refunds (order_id, amount_usd, reason, idempotency_key) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            (order_id, round(amount_usd, 2), reason, ctx.idempotency_key),
        )
        row = db.execute(
            "SELECT refund_id, order_id, amount_usd, reason FROM refunds WHERE idempotency_key = ?",
            (ctx.idempotency_key,),
        ).fetchone()
    return _receipt(dict(row))


@issue_refund.compensate
def void_refund(ctx: ToolContext, order_id: str, amount_usd: float, reason: str, result: Any = None) -> dict[str, Any]:
    """The undo of a refund: void it. Safe to run twice: the void's key is ``ctx.idempotency_key`` (the refund
    call's key plus ``:undo``) and a refund is voided at most once, so a rerun finds the void already made."""
    refund_key = ctx.idempotency_key.removesuffix(":undo")
    receipt = result if isinstance(result, dict) else {}
    with shop_of(ctx).connect() as db:
        refund = db.execute(  # the call's own refund; or, if a person settled the call, the one its receipt names
            "SELECT refund_id, order_id, amount_usd FROM refunds WHERE idempotency_key = ? OR 'R-' || refund_id = ? "
            "ORDER BY idempotency_key = ? DESC LIMIT 1",
            (refund_key, str(receipt.get("refund_id")), refund_key),
        ).fetchone()
        if refund is None:
            return {"voided": None, "note": f"no refund was recorded for order {order_id}: nothing to void"}
        db.execute(
            "INSERT INTO refund_voids (refund_id, idempotency_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (refund["refund_id"], ctx.idempotency_key),
        )
        void = db.execute("SELECT void_id FROM refund_voids WHERE refund_id = ?", (refund["refund_id"],)).fetchone()
    return {
        "voided": f"R-{refund['refund_id']}",
        "void_id": f"V-{void['void_id']}",
        "order_id": refund["order_id"],
        "amount_usd": refund["amount_usd"],
        "status": "voided before it settled: the card is not credited",
    }


def _check_refund(order: dict[str, Any], amount_usd: float, today: date) -> None:
    order_id = order["order_id"]
    if order["status"] != "delivered":
        raise ToolError(
            f"Order {order_id} has not been delivered yet (status: {order['status']}), and the policy refunds "
            "delivered orders only. Offer to track it with track_shipment instead."
        )
    days = (today - date.fromisoformat(order["delivered_on"])).days
    if days > REFUND_WINDOW_DAYS:
        raise ToolError(
            f"Refund refused: order {order_id} was delivered {days} days ago, outside the {REFUND_WINDOW_DAYS}-day "
            "refund window. Do not refund it: call escalate_to_human with a summary, so that a person can offer a "
            "repair or a goodwill credit, and tell the customer a colleague will reply."
        )
    left = round(order["amount_usd"] - order["refunded_usd"], 2)
    if amount_usd > left + 1e-9:
        raise ToolError(
            f"Refund refused: ${amount_usd:.2f} is more than the ${left:.2f} left to refund on order {order_id} "
            f"(paid ${order['amount_usd']:.2f}, refunded ${order['refunded_usd']:.2f}). Refund at most ${left:.2f}."
        )


def _receipt(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "refund_id": f"R-{row['refund_id']}",
        "order_id": row["order_id"],
        "amount_usd": row["amount_usd"],
        "reason": row["reason"],
        "status": "refunded to the card on file; 3-5 working days",
    }


@tool(effect="write", idempotent=True)
def escalate_to_human(ctx: ToolContext, order_id: OrderId, summary: str) -> dict[str, Any]:
    """Hand the case to a person, with a summary they can act on without rereading the conversation.

    Args:
        order_id: The order the case is about, e.g. #1234.
        summary: What the customer wants, what you found, and why you cannot settle it yourself.
    """
    with shop_of(ctx).connect() as db:
        db.execute(
            "INSERT INTO escalations (order_id, summary, idempotency_key) VALUES (?, ?, ?) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            (order_id, summary, ctx.idempotency_key),
        )
        row = db.execute(
            "SELECT escalation_id FROM escalations WHERE idempotency_key = ?", (ctx.idempotency_key,)
        ).fetchone()
    return {"escalation_id": f"E-{row[0]}", "queue": "customer care", "reply_within": "1 working day"}


TOOLS: tuple[Tool, ...] = (get_order, get_customer_orders, read_policy, track_shipment, issue_refund, escalate_to_human)
