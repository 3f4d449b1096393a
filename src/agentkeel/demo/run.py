"""``keel demo``: five support tickets, each a journaled run, with the failures a real desk meets.

1. a status question, answered from the shop's database;
2. the carrier's tracking API fails twice; the tool's retry policy recovers;
3. the model sends ``1003`` for an order id; the validation error says what is expected; it corrects itself;
4. a refund the policy forbids: the tool refuses with an actionable message; the agent escalates to a person;
5. a refund in a separate process that is killed (SIGKILL) right after the money moved; this process resumes
   the run; the refund tool runs again with the same idempotency key; the shop's database proves one refund.

Then the desk's controls (``control_run``): 6. a refund above the approval limit waits for a supervisor, who
approves it; 7. a spiral is told once, then stopped ``failed(loop_detected)``; 8. a runaway is stopped by its
budget, ``failed(budget_exceeded:cost_usd)``; 9. a small refund, withdrawn by the customer, is rolled back by a
supervisor: its compensation voids it, and the run ends ``rolled_back``.

The model is scripted by default. With ``--model provider:name`` a real model handles the same tickets with the
same tools, shop, crash and controls; it decides every turn itself, so the story may differ (the proof of one
refund per order does not).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

from rich.rule import Rule
from rich.text import Text

from agentkeel.agent import new_run_id
from agentkeel.cli.render import Output, print_runs
from agentkeel.core.state import replay
from agentkeel.demo.control_run import STORIES, Desk, Outcome
from agentkeel.demo.control_tickets import CONTROL_TICKETS
from agentkeel.demo.desk import APPROVAL_OVER_USD, NAME, build_agent
from agentkeel.demo.narrate import ending, heading, lesson, transcript
from agentkeel.demo.shop import SHOP_PATH, Shop
from agentkeel.demo.tickets import TICKETS
from agentkeel.errors import ConfigError, RunBusy
from agentkeel.models.base import Model
from agentkeel.models.resolve import resolve_model
from agentkeel.result import RunResult
from agentkeel.stores.base import RunRow, Store
from agentkeel.stores.open import DEFAULT_STORE_URL, default_store_url, open_store
from agentkeel.stores.sqlite import SQLiteStore

CARRIER_FAILURES = 2
"""The carrier's API fails this many times per parcel before it answers; ``track_shipment`` retries twice."""
TAKEOVER_ATTEMPTS = 5

LESSONS = {
    "flaky": "track_shipment declares retries=2, retry_on=(ConnectionError,): a transient failure is retried with "
    "backoff, and every attempt is in the journal.",
    "bad-argument": "Arguments are validated before a tool runs; the error names the field, the value and the "
    "expected format, so the model can fix its call.",
    "outside-policy": "The policy lives in the tool: ToolError('...') gives the model a refusal it can act on, "
    "whatever it decided.",
}


async def run_demo(out: Output, *, store_url: str | None, model: str) -> int:
    real = None if model == "scripted" else resolve_model(model)
    url = store_url or default_store_url()
    store = open_store(url)
    try:
        if not isinstance(store, SQLiteStore):
            raise ConfigError(
                f"the demo kills a worker process and resumes its run here, so its store must be shared between "
                f"processes: use a SQLite URL (e.g. {DEFAULT_STORE_URL}), not {url}"
            )
        shop = Shop.fresh(Path.cwd() / SHOP_PATH, carrier_failures=CARRIER_FAILURES)
        _introduce(out, url, real)
        total = len(TICKETS) + len(CONTROL_TICKETS)
        results: list[RunResult] = []
        for number, ticket in enumerate(TICKETS[:-1], start=1):
            heading(out, number, total, ticket)
            result = await build_agent(shop=shop, store=store, ticket=ticket, model=real).run(ticket.task)
            transcript(out, (await store.load(result.run_id))[1:])
            ending(out, result)
            if ticket.key in LESSONS:
                lesson(out, LESSONS[ticket.key])
            results.append(result)
        heading(out, len(TICKETS), total, TICKETS[-1])
        crashed = await _crash_and_resume(out, store, url, shop, model, real)
        if crashed is None:
            return 1
        results.append(crashed)
        ok = shop.refund_count("#1005") == 1 and all(r.status == "completed" for r in results)
        desk = Desk(out=out, store=store, shop=shop, model=real, flags=_flags(url))
        _controls_intro(out)
        outcomes: dict[str, Outcome] = {}
        for number, ticket in enumerate(CONTROL_TICKETS, start=len(TICKETS) + 1):
            heading(out, number, total, ticket)
            outcomes[ticket.key] = await STORIES[ticket.key](desk)
        results.extend(outcome.result for outcome in outcomes.values())
        _summary(out, url, await _rows(store, results), crashed.run_id, outcomes)
        return 0 if ok and all(outcome.ok for outcome in outcomes.values()) else 1
    finally:
        await store.close()


def _introduce(out: Output, url: str, real: Model | None) -> None:
    out.show(Rule(Text("agentkeel demo: a customer-support desk", style="bold")))
    if real is None:
        out.print(
            Text(
                "The model is scripted: ScriptedModel plays each ticket's turns from a script, offline and "
                "deterministic (no API key, no network, no cost). Everything else is real: the journal, the "
                "tools, the shop's database, the retries, the crash.",
                style="bold yellow",
            )
        )
        out.print(
            "To plug in a real model: keel demo --model openai:gpt-4.1-mini with OPENAI_API_KEY set, or any "
            "OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio) via OPENAI_BASE_URL."
        )
    else:
        out.print(
            Text(
                f"The model is {real.name}: it reads each ticket and decides every turn itself (no script). The "
                "journal, the tools, the shop's database, the retries and the crash are the same as offline.",
                style="bold yellow",
            )
        )
    out.print(Text(f"store  {url}   (every run is journaled here)", style="dim"))
    out.print(
        Text(
            f"shop   {SHOP_PATH}   (customers, orders, the refund policy, refunds with a UNIQUE idempotency key)",
            style="dim",
        )
    )


def _controls_intro(out: Output) -> None:
    out.print()
    out.print(
        Text(
            f"The next tickets show the desk's controls: a gate that holds refunds above ${APPROVAL_OVER_USD} for a "
            "person, loop detection (on by default), a budget, and a rollback that undoes a run's refund. Each "
            "ends in a status with a reason.",
            style="bold yellow",
        )
    )


def _flags(url: str) -> str:
    return "" if url == DEFAULT_STORE_URL else f" --store {url}"


async def _crash_and_resume(
    out: Output, store: Store, url: str, shop: Shop, model: str, real: Model | None
) -> RunResult | None:
    ticket = TICKETS[-1]
    run_id = new_run_id()
    command = [sys.executable, "-m", "agentkeel.demo.worker", "--store", url, "--shop", str(shop.path)]
    command += ["--run-id", run_id, "--model", model]
    out.print(Text("A worker process takes this ticket (python -m agentkeel.demo.worker).", style="dim"))
    worker = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, check=False)
    if worker.returncode == 0 and real is not None:
        out.error(
            f"{real.name} ended the refund ticket without calling issue_refund ({worker.stderr.strip()}), so there "
            "was no crash to resume: a real model decides for itself. Run the demo again, or without --model for "
            "the scripted story."
        )
        return None
    if worker.returncode != -signal.SIGKILL:
        out.error(
            f"the worker should have been killed inside issue_refund, but it exited with code {worker.returncode}: "
            f"{worker.stderr.strip() or worker.stdout.strip() or '(no output)'}"
        )
        return None
    events = await store.load(run_id)
    transcript(out, events[1:])
    state = replay(events)
    interrupted = ", ".join(f"{c.call} {c.name}" for c in state.in_flight) or "none"
    out.print(
        Text(
            f"✗ the worker was killed (SIGKILL) inside issue_refund, after the refund reached the shop's database "
            f"and before its result reached the journal. Refunds for #1005 in the shop: {shop.refund_count('#1005')}. "
            f"The journal: call {interrupted} started, no outcome.",
            style="bold red",
        )
    )
    out.print(Text("This process resumes the run; the journal says where it stopped.", style="dim"))
    agent = build_agent(shop=shop, store=store, ticket=ticket, model=real)
    for _ in range(TAKEOVER_ATTEMPTS):
        try:
            result = await agent.resume(run_id)
            break
        except RunBusy as busy:  # the dead worker's lease has not expired yet
            wait = busy.expires_in_s + 0.05
            out.print(
                Text(
                    f"  the dead worker's lease on the run expires in {busy.expires_in_s:.1f}s (a crashed driver's "
                    f"lease expires, then any process may take over): waiting {wait:.1f}s",
                    style="dim",
                )
            )
            await asyncio.sleep(wait)
    else:
        out.error(f"run {run_id} could not be taken over after {TAKEOVER_ATTEMPTS} attempts")
        return None
    transcript(out, (await store.load(run_id))[len(events) :])
    ending(out, result)
    key = f"{run_id}:{state.in_flight[0].call}" if state.in_flight else "?"
    refunds = shop.refund_count("#1005")
    proof = Text(
        f"Proof: refunds for order #1005 in the shop's database: {refunds}. issue_refund ran twice, in two "
        f"processes, with the same idempotency key ({key}); the database's UNIQUE key let the money move once.",
        style="bold green" if refunds == 1 else "bold red",
    )
    out.print(proof)
    return result


async def _rows(store: Store, results: list[RunResult]) -> list[RunRow]:
    wanted = {result.run_id: index for index, result in enumerate(results)}
    rows = [row for row in await store.list_runs(limit=1000, agent=NAME) if row.run_id in wanted]
    return sorted(rows, key=lambda row: wanted[row.run_id])


def _summary(out: Output, url: str, rows: list[RunRow], crashed: str, outcomes: dict[str, Outcome]) -> None:
    out.print()
    out.show(Rule(Text("This demo's runs"), align="left"))
    print_runs(out, rows)
    flags = _flags(url)
    out.print()
    out.print(Text("Explore:", style="bold"))
    commands = [(f"keel runs{flags}", "every run in the store")]
    commands.append((f"keel show {crashed}{flags}", "the crashed and resumed refund, step by step"))
    stories = {
        "approval": "the refund that waited for a supervisor",
        "spiral": "the spiral: the message to the model, then the stop",
        "runaway": "the runaway and its budget",
        "rollback": "the refund, then its rollback and the void",
    }
    commands += [(f"keel show {o.result.run_id}{flags}", stories[key]) for key, o in outcomes.items()]
    commands.append((f"keel show {crashed} --json{flags}", "a journal, event by event"))
    commands.append((f"keel stats{flags}", "success rate, failures by reason, cost per task, failing tools"))
    commands.append(
        (f"keel export {crashed}{flags} --endpoint http://localhost:4318", "its trace, to an OTLP collector")
    )
    commands.append(
        (f"sqlite3 {SHOP_PATH} 'select * from refunds left join refund_voids using (refund_id)'", "the shop's side")
    )
    width = max(len(command) for command, _ in commands)
    for command, what in commands:
        out.print(Text.assemble(("  " + command.ljust(width), "bold"), ("   " + what, "dim")))
