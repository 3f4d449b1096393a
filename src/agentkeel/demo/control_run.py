"""``keel demo``, tickets 6 to 9: the desk's controls at work (the tickets and their scripts are in
``control_tickets``).

A real model (``--model``) gets the same tickets and decides for itself: if it never asks for a large refund,
never spirals, never runs away or makes no refund to roll back, the demo says so and goes on; only a second
refund of one order counts as a failure then.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from rich.text import Text

from agentkeel.agent import Agent
from agentkeel.cli.render import Output, plural
from agentkeel.core.events import Intervened, ToolCallFinished, ToolCallStarted
from agentkeel.demo.control_tickets import BY_KEY, RUNAWAY_BUDGET, SMALL_REFUND_ORDER, WITHDRAWAL
from agentkeel.demo.desk import APPROVAL_OVER_USD, SCRIPTED_PRICE, build_agent
from agentkeel.demo.narrate import ending, lesson, say, transcript
from agentkeel.demo.shop import Shop
from agentkeel.demo.supervisor import REF
from agentkeel.errors import KeelError
from agentkeel.models.base import Model
from agentkeel.result import RunResult
from agentkeel.stores.base import Store

SUPERVISOR = "supervisor"
"""Who approves the large refund, and rolls the withdrawn one back, as the journal records it."""
ROLLBACK_REASON = "the customer withdrew her refund request"
APPROVAL_ROUNDS = 3
"""A real model may ask for more than one large refund: the demo approves at most this many rounds of them."""


@dataclass(frozen=True, kw_only=True)
class Desk:
    """What every ticket of the demo shares: where to print, the store, the shop, the model."""

    out: Output
    store: Store
    shop: Shop
    model: Model | None
    """``None``: the scripted model."""
    flags: str = ""
    """What a ``keel`` command needs to find the demo's runs: `` --store URL`` unless the store is the default."""

    def agent(self, key: str, *, ref: str = "") -> Agent:
        return build_agent(shop=self.shop, store=self.store, ticket=BY_KEY[key], model=self.model, ref=ref)

    def look(self, result: RunResult, what: str) -> None:
        self.out.print(
            Text.assemble(
                ("Look at it: ", "dim"), (f"keel show {result.run_id}{self.flags}", "bold"), (f"   {what}", "dim")
            )
        )


@dataclass(frozen=True, kw_only=True)
class Outcome:
    result: RunResult
    ok: bool
    """The ticket ended as it should: with the scripted model, exactly as scripted; with a real one, with no
    refund repeated."""


async def approval(desk: Desk) -> Outcome:
    """A refund above the limit: held, approved by a person through the Python API, resumed, issued once."""
    out, store = desk.out, desk.store
    agent = desk.agent("approval", ref=REF)
    result = await agent.run(BY_KEY["approval"].task)
    shown = await store.load(result.run_id)
    transcript(out, shown[1:])
    ending(out, result)
    rounds = 0
    while result.status == "paused" and result.reason == "awaiting_approval" and rounds < APPROVAL_ROUNDS:
        rounds += 1
        waiting = (await agent.state(result.run_id)).awaiting
        _how_to_decide(desk, result.run_id, waiting)
        for call in waiting:
            await agent.approve(result.run_id, call, by=SUPERVISOR)
        result = await agent.resume(result.run_id)
        events = await store.load(result.run_id)
        transcript(out, events[len(shown) :])
        ending(out, result)
        shown = events
    refunds = desk.shop.refund_count("#1007")
    if rounds == 0:
        out.print(
            Text(
                f"The model asked for no refund above ${APPROVAL_OVER_USD}, so nothing waited for a person.",
                style="bold yellow",
            )
        )
    else:
        out.print(
            Text(
                f"Proof: refunds for order #1007 in the shop's database: {refunds}, issued after the approval. The "
                "run waited in the store, holding no process; any process could have resumed it.",
                style="bold green" if refunds == 1 else "bold red",
            )
        )
    lesson(
        out,
        f"Agent(gates=[require_approval('issue_refund', when=lambda args: args['amount_usd'] > "
        f"{APPROVAL_OVER_USD})]): the gate decides when the model asks for the call, and the decision is "
        "journaled; a resumed run honours it.",
    )
    desk.look(result, "the call held, who approved it and when, then the refund")
    expected = result.status == "completed" and refunds == 1 if desk.model is None else refunds <= 1
    return Outcome(result=result, ok=expected)


def _how_to_decide(desk: Desk, run_id: str, waiting: tuple[str, ...]) -> None:
    out, flags = desk.out, desk.flags
    model = f" --model {desk.model.name}" if desk.model is not None else ""
    out.print(Text("The refund waits for a person. From a shell, in this directory, a supervisor runs:", style="dim"))
    commands = [(f"keel approvals{flags}", "lists the calls waiting, across runs")]
    for call in waiting:
        commands.append((f"keel approve {run_id} {call}{flags}{model}", "approves it, and the run resumes"))
        commands.append(
            (f"keel reject {run_id} {call} --reason TEXT{flags}{model}", "or refuses it; the agent is told why")
        )
    width = max(len(command) for command, _ in commands)
    for command, what in commands:
        out.print(Text.assemble(("  " + command.ljust(width), "bold"), ("   " + what, "dim")))
    out.print(
        Text(
            f"Here the demo is the supervisor, through the Python API: await agent.approve(run_id, call, "
            f"by={SUPERVISOR!r}), then await agent.resume(run_id).",
            style="dim",
        )
    )


async def spiral(desk: Desk) -> Outcome:
    """The same failing lookup, again and again: the model is told once, then the run is stopped."""
    out = desk.out
    result = await desk.agent("spiral").run(BY_KEY["spiral"].task)
    transcript(out, (await desk.store.load(result.run_id))[1:])
    ending(out, result)
    if result.reason == "loop_detected":
        out.print(Text(f"Evidence, in the journal: {result.detail}", style="bold red"))
    else:
        out.print(Text("The model changed course by itself: the loop policy had nothing to stop.", style="bold yellow"))
    lesson(
        out,
        "LoopPolicy() is on by default: the same error 3 times (or the same call and result 5 times, or 8 steps "
        "with nothing new) earns the model one message; the next trip ends the run failed(loop_detected), before "
        "another model call is paid for.",
    )
    desk.look(result, "the calls, the engine's message to the model, the evidence")
    expected = result.status == "failed" and result.reason == "loop_detected"
    return Outcome(result=result, ok=expected or desk.model is not None)


async def runaway(desk: Desk) -> Outcome:
    """A model that reads the whole order book: the budget stops it, with one last turn to answer."""
    out = desk.out
    if desk.model is None:
        out.print(
            Text(
                f"This ticket's run has a budget: {RUNAWAY_BUDGET!r}. For it the scripted model is priced like a "
                f"mid-size hosted model (${SCRIPTED_PRICE.input:g} in, ${SCRIPTED_PRICE.output:g} out per million "
                "tokens); nothing is paid.",
                style="dim",
            )
        )
    else:
        out.print(
            Text(f"This ticket's run has a budget: {RUNAWAY_BUDGET!r}, at {desk.model.name}'s price.", style="dim")
        )
    result = await desk.agent("runaway").run(BY_KEY["runaway"].task)
    events = await desk.store.load(result.run_id)
    transcript(out, events[1:])
    ending(out, result)
    told = [e for e in events if isinstance(e, Intervened) and e.rule == "budget"]
    if result.reason.startswith("budget_exceeded"):
        figures = told[-1].evidence if told else result.detail
        out.print(Text(f"Figures: {figures}", style="bold red"))
        out.print(
            Text(
                f"Spent in all: ${result.cost_usd:.4f}, the last turn included; the customer got the partial answer "
                "above instead of silence.",
                style="dim",
            )
        )
    else:
        out.print(Text("The model did not run away: the budget was never reached.", style="bold yellow"))
    lesson(
        out,
        "Agent(budget=Budget(cost_usd=..., steps=..., tool_calls=..., seconds=...)): each limit is checked before "
        "the call that would cross it, so no call starts that the run cannot afford.",
    )
    desk.look(result, "each model call's cost, and the budget's message before the last turn")
    expected = result.status == "failed" and result.reason == "budget_exceeded:cost_usd"
    return Outcome(result=result, ok=expected or desk.model is not None)


async def rollback(desk: Desk) -> Outcome:
    """A small refund the desk issues itself; the customer withdraws; a supervisor rolls the run back through the
    Python API, and the refund's compensation voids it in the shop's database."""
    out, store = desk.out, desk.store
    agent = desk.agent("rollback", ref=REF)
    result = await agent.run(BY_KEY["rollback"].task)
    shown = await store.load(result.run_id)
    transcript(out, shown[1:])
    ending(out, result)
    done = {e.call for e in shown if isinstance(e, ToolCallFinished) and e.name == "issue_refund" and not e.error}
    orders = sorted(
        {str(e.arguments.get("order_id")) for e in shown if isinstance(e, ToolCallStarted) and e.call in done}
    )
    if not orders:
        out.print(Text("The model made no refund, so there is nothing to roll back.", style="bold yellow"))
    else:
        say(out, "customer", WITHDRAWAL)
        _how_to_roll_back(desk, result.run_id)
        try:
            result = await agent.rollback(result.run_id, by=SUPERVISOR, reason=ROLLBACK_REASON)
        except KeelError as refused:  # a real model's run may be in no state to roll back (e.g. still paused)
            out.print(Text(f"The rollback was refused: {refused}", style="bold yellow"))
            return Outcome(result=result, ok=desk.model is not None)
        transcript(out, (await store.load(result.run_id))[len(shown) :])
        ending(out, result)
        if result.status == "rolled_back":
            try:
                await agent.rollback(result.run_id, by=SUPERVISOR, reason=ROLLBACK_REASON)
            except KeelError as again:
                out.print(Text(f"A second rollback changes nothing: {again}.", style="dim"))
        else:
            out.print(Text(f"Not everything was undone: {result.detail}", style="bold yellow"))
        for order in orders:
            _void_proof(desk, result, order)
    lesson(
        out,
        "@issue_refund.compensate declares a refund's undo (it voids the refund under ctx.idempotency_key, so it is "
        "safe to run twice); agent.rollback(run_id) or keel rollback RUN runs a run's compensations, the last "
        "first, each once, journaled; Agent(rollback_on='failure') rolls failed runs back by itself.",
    )
    desk.look(result, "the refund, then the rollback: who, why, and the void")
    made = desk.shop.refund_count(SMALL_REFUND_ORDER) + desk.shop.refund_count(SMALL_REFUND_ORDER, voided=True)
    if desk.model is not None:
        return Outcome(result=result, ok=made <= 1)
    voids = desk.shop.voids(SMALL_REFUND_ORDER)
    return Outcome(result=result, ok=result.status == "rolled_back" and made == 1 and len(voids) == 1)


def _how_to_roll_back(desk: Desk, run_id: str) -> None:
    out = desk.out
    out.print(Text("The refund must be undone. From a shell, in this directory, a supervisor runs:", style="dim"))
    command = f"keel rollback {run_id} --reason {shlex.quote(ROLLBACK_REASON)}{desk.flags}"
    out.print(
        Text.assemble(("  " + command, "bold"), ("   runs the compensation of each refund, the last first", "dim"))
    )
    out.print(
        Text(
            f"Here the demo is the supervisor, through the Python API: await agent.rollback(run_id, by={SUPERVISOR!r}, "
            f"reason={ROLLBACK_REASON!r}).",
            style="dim",
        )
    )


def _void_proof(desk: Desk, result: RunResult, order: str) -> None:
    shop = desk.shop
    standing, voided = shop.refund_count(order), shop.refund_count(order, voided=True)
    voids = shop.voids(order)
    listed = "; ".join(
        f"R-{v['refund_id']} (${v['amount_usd']:.2f}) by void V-{v['void_id']}, key {v['idempotency_key']}"
        for v in voids
    )
    good = result.status == "rolled_back" and standing == 0 and voided == len(voids) == 1
    desk.out.print(
        Text(
            f"Proof: order {order} in the shop's database: {plural(standing + voided, 'refund')}, "
            f"{voided} voided{f' ({listed})' if listed else ''}, {standing} standing. The run is {result.status}; "
            "its answer stays in the journal.",
            style="bold green" if good else "bold red",
        )
    )


STORIES = {"approval": approval, "spiral": spiral, "runaway": runaway, "rollback": rollback}
"""Each control ticket's story, by its key (in ``CONTROL_TICKETS`` order)."""
