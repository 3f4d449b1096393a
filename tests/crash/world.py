"""The crash tests' world: a deterministic agent, and the records its runs leave outside the store.

Two scenarios, each a scripted conversation and its tools. The tools act on a ledger (its own SQLite file, not
the store): the effects of the write tools, keyed by idempotency key, and every time a tool's body ran. The
model writes one line to the model log per request. Each tool passes checkpoints (``enter``, before any effect;
``effect``, right after its effect is recorded and before it returns) where a test can kill or hold the process.
The ``undo`` scenarios are the desk's conversation with write tools whose compensations (a rollback's undos)
record their voids in the ledger under the call's key plus ``:undo`` and pass the same checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentkeel import (
    Agent,
    ModelRequest,
    ModelResponse,
    Reconciled,
    ScriptedModel,
    Store,
    ToolContext,
    calls,
    reply,
    tool,
)

RUN_ID = "crash-run"
TASK = "Refund orders #1001, #1002 and #1003 per policy and tell the customer."
STORE_FILE = "keel.db"
LEDGER_FILE = "ledger.db"
MODEL_LOG_FILE = "model.log"

Checkpoint = Callable[[str, str], Awaitable[None]]
"""Called inside the tools at each point a crash may hit: ``(call, phase)``."""


# -- the world the tools act on ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Effect:
    """One effect a write tool had, as the outside system recorded it."""

    tool: str
    key: str
    arguments: dict[str, Any]
    result: Any
    pid: int


class Ledger:
    """The outside world of the tools, in its own SQLite file (not the store): what was refunded, sent, charged.

    ``record(..., dedupe=True)`` behaves like a payment API that honours idempotency keys: a second request with
    a key it has seen returns the first result and changes nothing. ``dedupe=False`` is a system without keys:
    every request is one more effect, so a repeated call shows up as a second row with the same key.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with closing(self._connect()) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS effects (seq INTEGER PRIMARY KEY, tool TEXT NOT NULL, "
                "key TEXT NOT NULL, arguments TEXT NOT NULL, result TEXT NOT NULL, pid INTEGER NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS invocations (seq INTEGER PRIMARY KEY, tool TEXT NOT NULL, "
                "call TEXT NOT NULL, key TEXT NOT NULL, attempt INTEGER NOT NULL, pid INTEGER NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA busy_timeout=30000")
        return db

    def invoked(self, name: str, ctx: ToolContext) -> None:
        with closing(self._connect()) as db:
            db.execute(
                "INSERT INTO invocations (tool, call, key, attempt, pid) VALUES (?, ?, ?, ?, ?)",
                (name, ctx.call, ctx.idempotency_key, ctx.attempt, os.getpid()),
            )

    def record(self, name: str, key: str, arguments: dict[str, Any], result: Any, *, dedupe: bool) -> Any:
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            if dedupe:
                seen = db.execute("SELECT result FROM effects WHERE key = ?", (key,)).fetchone()
                if seen is not None:
                    db.execute("COMMIT")
                    return json.loads(seen[0])
            db.execute(
                "INSERT INTO effects (tool, key, arguments, result, pid) VALUES (?, ?, ?, ?, ?)",
                (name, key, json.dumps(arguments, sort_keys=True), json.dumps(result), os.getpid()),
            )
            db.execute("COMMIT")
            return result
        finally:
            db.close()

    def find(self, key: str) -> Effect | None:
        found = [effect for effect in self.effects() if effect.key == key]
        return found[0] if found else None

    def effects(self) -> list[Effect]:
        db = self._connect()
        try:
            rows = db.execute("SELECT tool, key, arguments, result, pid FROM effects ORDER BY seq").fetchall()
        finally:
            db.close()
        return [
            Effect(tool=tool, key=key, arguments=json.loads(args), result=json.loads(result), pid=pid)
            for tool, key, args, result, pid in rows
        ]

    def invocations(self) -> list[tuple[str, str, str, int, int]]:
        """``(tool, call, idempotency key, attempt, pid)`` for every time a tool body ran."""
        db = self._connect()
        try:
            return db.execute("SELECT tool, call, key, attempt, pid FROM invocations ORDER BY seq").fetchall()
        finally:
            db.close()


@dataclass(frozen=True, kw_only=True)
class World:
    """What the tools get as ``ctx.deps``: the ledger, and the hook called at every crash point inside them."""

    ledger: Ledger
    checkpoint: Checkpoint | None = None

    async def at(self, ctx: ToolContext, phase: str) -> None:
        if self.checkpoint is not None:
            await self.checkpoint(ctx.call, phase)


ORDERS: dict[str, dict[str, Any]] = {
    "#1001": {"order_id": "#1001", "customer": "ada@example.com", "total_usd": 25.0, "status": "damaged"},
    "#1002": {"order_id": "#1002", "customer": "ada@example.com", "total_usd": 10.0, "status": "late"},
    "#1003": {"order_id": "#1003", "customer": "ada@example.com", "total_usd": 5.0, "status": "late"},
}


@tool
async def lookup_order(ctx: ToolContext, order_id: str) -> dict[str, Any]:
    """Look an order up by its id (#NNNN)."""
    world: World = ctx.deps
    world.ledger.invoked("lookup_order", ctx)
    await world.at(ctx, "enter")
    return ORDERS[order_id]


@tool
async def read_policy(ctx: ToolContext, topic: str) -> str:
    """Read the shop's policy on a topic."""
    world: World = ctx.deps
    world.ledger.invoked("read_policy", ctx)
    await world.at(ctx, "enter")
    return f"{topic}: damaged or late orders are refunded in full; tell the customer by email."


@tool(effect="write", idempotent=True)
async def issue_refund(ctx: ToolContext, order_id: str, amount_usd: float) -> dict[str, Any]:
    """Refund an order. The payment provider honours the idempotency key."""
    world: World = ctx.deps
    world.ledger.invoked("issue_refund", ctx)
    await world.at(ctx, "enter")
    result = {"refund_id": f"rf-{ctx.call}", "order_id": order_id, "amount_usd": amount_usd}
    args = {"order_id": order_id, "amount_usd": amount_usd}
    recorded = world.ledger.record("issue_refund", ctx.idempotency_key, args, result, dedupe=True)
    await world.at(ctx, "effect")
    return recorded


@tool(effect="write")
async def send_email(ctx: ToolContext, to: str, subject: str) -> dict[str, Any]:
    """Send an email. The mail server has no idempotency keys; ``reconcile`` asks its log what was sent."""
    world: World = ctx.deps
    world.ledger.invoked("send_email", ctx)
    await world.at(ctx, "enter")
    result = {"message_id": f"msg-{ctx.call}", "to": to}
    world.ledger.record("send_email", ctx.idempotency_key, {"to": to, "subject": subject}, result, dedupe=False)
    await world.at(ctx, "effect")
    return result


@send_email.reconcile
def _email_sent(ctx: ToolContext, to: str, subject: str) -> Reconciled:
    world: World = ctx.deps
    found = world.ledger.find(ctx.idempotency_key)
    return Reconciled(happened=found is not None, result=found.result if found is not None else None)


@tool(effect="write")
async def charge_card(ctx: ToolContext, order_id: str, amount_usd: float) -> dict[str, Any]:
    """Charge the customer's card. Neither idempotent nor reconcilable: after a crash, a person decides."""
    world: World = ctx.deps
    world.ledger.invoked("charge_card", ctx)
    await world.at(ctx, "enter")
    result = {"charge_id": f"ch-{ctx.call}", "order_id": order_id, "amount_usd": amount_usd}
    args = {"order_id": order_id, "amount_usd": amount_usd}
    world.ledger.record("charge_card", ctx.idempotency_key, args, result, dedupe=False)
    await world.at(ctx, "effect")
    return result


# -- the scripted conversations ---------------------------------------------------------------------------

Turn = ModelResponse | Callable[[ModelRequest], ModelResponse]


def _echo_last_result(request: ModelRequest) -> ModelResponse:
    last = request.messages[-1]
    return reply(f"charged: {last.content if last.kind == 'tool_result' else '?'}")


SCENARIOS: dict[str, tuple[Sequence[Turn], tuple[Any, ...]]] = {
    # Reads in parallel with a call to a tool that does not exist; an idempotent write; a reconcilable write
    # beside a read; two idempotent writes in one response; the answer.
    "desk": (
        (
            calls(
                ("lookup_order", {"order_id": "#1001"}),
                ("read_policy", {"topic": "refunds"}),
                ("lookup_ordr", {"order_id": "#1002"}),
            ),
            calls(("issue_refund", {"order_id": "#1001", "amount_usd": 25.0})),
            calls(
                ("send_email", {"to": "ada@example.com", "subject": "Your refund for #1001"}),
                ("lookup_order", {"order_id": "#1002"}),
            ),
            calls(
                ("issue_refund", {"order_id": "#1002", "amount_usd": 10.0}),
                ("issue_refund", {"order_id": "#1003", "amount_usd": 5.0}),
            ),
            reply("Refunded #1001 ($25), #1002 ($10) and #1003 ($5); Ada has been told."),
        ),
        (lookup_order, read_policy, issue_refund, send_email),
    ),
    # A write that only a person can settle after a crash; the answer quotes what the model was told.
    "charge": (
        (calls(("charge_card", {"order_id": "#1001", "amount_usd": 40.0})), _echo_last_result),
        (lookup_order, charge_card),
    ),
}


# -- rollback: the desk's write tools with their undos ---------------------------------------------------------


def _undoing(*, dedupe: bool) -> tuple[Any, Any]:
    """Copies of the desk's two write tools, each with a compensation that records its undo in the ledger under
    ``ctx.idempotency_key`` (the call's key plus ``:undo``), passing the same checkpoints as the tools. With
    ``dedupe`` the outside system honours that key (a rerun voids nothing twice); without it every run of a
    compensation is one more void: a compensation that breaks the contract, for the tests to catch."""

    async def void_refund(ctx: ToolContext, order_id: str, amount_usd: float, result: dict[str, Any]) -> Any:
        world: World = ctx.deps
        world.ledger.invoked("void_refund", ctx)
        await world.at(ctx, "enter")
        voided = {"voided": result["refund_id"], "order_id": order_id, "amount_usd": amount_usd}
        recorded = world.ledger.record(
            "void_refund", ctx.idempotency_key, {"refund_id": result["refund_id"]}, voided, dedupe=dedupe
        )
        await world.at(ctx, "effect")
        return recorded

    async def recall_email(ctx: ToolContext, to: str, subject: str, result: dict[str, Any]) -> Any:
        world: World = ctx.deps
        world.ledger.invoked("recall_email", ctx)
        await world.at(ctx, "enter")
        recalled = {"recalled": result["message_id"], "to": to}
        recorded = world.ledger.record(
            "recall_email", ctx.idempotency_key, {"message_id": result["message_id"]}, recalled, dedupe=dedupe
        )
        await world.at(ctx, "effect")
        return recorded

    refund = dataclasses.replace(issue_refund, compensation_fn=void_refund)
    email = dataclasses.replace(send_email, compensation_fn=recall_email)
    return refund, email


UNDOS = {"issue_refund": "void_refund", "send_email": "recall_email"}
"""The ledger name of each write tool's undo."""

# The desk's conversation, with write tools that can be undone (``undo``), or undone sloppily (``undo_sloppy``:
# compensations that ignore their idempotency key). The desk scenario itself is left as it is.
SCENARIOS["undo"] = (SCENARIOS["desk"][0], (lookup_order, read_policy, *_undoing(dedupe=True)))
SCENARIOS["undo_sloppy"] = (SCENARIOS["desk"][0], (lookup_order, read_policy, *_undoing(dedupe=False)))


class LoggedModel:
    """The scenario's scripted model, writing one line to the model log per request: ``<pid> <step>``."""

    def __init__(self, scenario: str, log: Path) -> None:
        turns = SCENARIOS[scenario][0]
        self._inner = ScriptedModel(lambda request: _turn(turns, request))
        self._log = log
        self.name = "scripted"

    async def respond(self, request: ModelRequest) -> ModelResponse:
        with self._log.open("a") as log:
            log.write(f"{os.getpid()} {_step_of(request)}\n")
        return await self._inner.respond(request)


def _step_of(request: ModelRequest) -> int:
    return 1 + sum(1 for message in request.messages if message.kind == "assistant")


def _turn(turns: Sequence[Turn], request: ModelRequest) -> ModelResponse:
    turn = turns[_step_of(request) - 1]
    return turn if isinstance(turn, ModelResponse) else turn(request)


def build_agent(
    scenario: str, directory: Path, store: Store, *, checkpoint: Checkpoint | None = None, lease_s: float = 30.0
) -> Agent:
    return Agent(
        name=f"crash-{scenario}",
        instructions="Settle the customer's refunds.",
        model=LoggedModel(scenario, directory / MODEL_LOG_FILE),
        tools=list(SCENARIOS[scenario][1]),
        store=store,
        lease_s=lease_s,
        deps=World(ledger=Ledger(directory / LEDGER_FILE), checkpoint=checkpoint),
        max_steps=10,
    )


# -- reading the records ----------------------------------------------------------------------------------


def model_requests(directory: Path) -> list[tuple[int, int]]:
    """``(pid, step)`` for every model request, in order."""
    log = directory / MODEL_LOG_FILE
    if not log.exists():
        return []
    return [(int(pid), int(step)) for pid, step in (line.split() for line in log.read_text().splitlines())]


def effect_counts(directory: Path) -> Counter[tuple[str, str]]:
    """How many times each ``(tool, idempotency key)`` took effect."""
    return Counter((effect.tool, effect.key) for effect in Ledger(directory / LEDGER_FILE).effects())
