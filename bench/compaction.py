"""Bounded context: the input tokens of a 100-step task with and without compaction (`python -m bench.compaction`).

The task: a ``ScriptedModel`` looks up 100 orders, one a step; each lookup returns a few kilobytes of JSON. Every
ten orders the agent writes a note (``write_note``) with what it must keep from the latest result; after the last
order it answers from its notes alone, so the answer is the same whether older results were compacted or not.

Two figures per configuration, both the sum of the prompt tokens of every model call:

* **simulated**: :func:`simulate` replays the same conversation through ``plan_compaction`` and
  ``compacted_view`` (pure, no engine), counting the messages only;
* **real**: the run of an ``Agent`` (``context=ContextPolicy(...)`` or ``None``), its ``usage.input_tokens``
  as ``ScriptedModel`` estimates them (the instructions and tool schemas included).

The target: at least 5x fewer input tokens with compaction, and the same final answer.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkeel import (
    Agent,
    AssistantMessage,
    MemoryStore,
    ModelResponse,
    ToolCall,
    ToolResultMessage,
    UserMessage,
    reply,
    tool,
)
from agentkeel.core.compaction import ContextPolicy, compacted_view, estimate_tokens, plan_compaction
from agentkeel.core.messages import Message
from agentkeel.models.scripted import ScriptedModel, calls
from agentkeel.tools.notes import NOTES_TOOL_NAME, notes_tool, write_note

STEPS = 100
NOTE_EVERY = 10
RESULT_CHARS = 16_000
"""The size of one lookup's JSON: a page of order lines, about 4,000 tokens."""
TARGET_RATIO = 5.0
TASK = "Check every order from #0001 to #{steps:04d} and report, from your notes, the status of each tenth one."
RESULTS = Path(__file__).resolve().parent / "results"
SWEEP = ((2_000, ContextPolicy()), (4_000, ContextPolicy()), (4_000, ContextPolicy(max_tokens=8_000)))
"""Other (result size, policy) pairs, simulated only, to show what the ratio depends on."""


@functools.lru_cache(maxsize=256)
def lookup_result(number: int, size: int = RESULT_CHARS) -> str:
    """Order ``#number`` as compact JSON of about ``size`` characters (deterministic)."""
    status = ("shipped", "delivered", "held", "returned")[number % 4]
    head: dict[str, Any] = {"order": f"#{number:04d}", "status": status, "total_usd": round(number * 7.31, 2)}
    line = {"sku": f"SKU-{number:04d}-000", "qty": 1, "note": "standard handling"}
    count = max(1, size // (len(json.dumps(line, separators=(",", ":"))) + 1))
    lines = [
        {"sku": f"SKU-{number:04d}-{n:03d}", "qty": (number * n) % 7 + 1, "note": "standard handling"}
        for n in range(1, count + 1)
    ]
    return json.dumps({**head, "lines": lines}, separators=(",", ":"))


def next_turn(messages: Sequence[Message], steps: int = STEPS) -> ModelResponse:
    """The agent's next turn, from the conversation it is shown (the engine's or the simulation's).

    Turns are counted from the assistant messages, which compaction never removes, and the notes are read from
    its own ``write_note`` calls, which compaction keeps verbatim: the script plays the same with or without it.
    """
    done = sum(1 for message in messages if message.kind == "assistant")
    if done <= steps and done and done % NOTE_EVERY == 0:
        note = (NOTES_TOOL_NAME, {"key": f"orders {done - NOTE_EVERY + 1:03d}-{done:03d}", "value": _fact(messages)})
        if done == steps:
            return calls(note)
        return calls(note, ("lookup_order", {"order_id": f"#{done + 1:04d}"}))
    if done < steps:
        return calls(("lookup_order", {"order_id": f"#{done + 1:04d}"}))
    notes = [
        f"- {call.arguments['key']}: {call.arguments['value']}"
        for message in messages
        if isinstance(message, AssistantMessage)
        for call in message.tool_calls
        if call.name == NOTES_TOOL_NAME and isinstance(call.arguments, dict)
    ]
    return reply("\n".join([f"Checked {steps} orders. From my notes:", *notes]))


def _fact(messages: Sequence[Message]) -> str:
    """What the agent keeps from the latest lookup (always verbatim: the last step is never compacted)."""
    for message in reversed(messages):
        if message.kind == "tool_result" and message.name == "lookup_order":
            order = json.loads(message.content)
            return (
                f"order {order['order']} is {order['status']}, ${order['total_usd']:.2f}, {len(order['lines'])} lines"
            )
    return "no order looked up yet"


def simulate(steps: int, policy: ContextPolicy | None, *, result_chars: int = RESULT_CHARS) -> int:
    """Total prompt tokens of the task's model calls, replayed through the compaction functions (no engine).

    Before each model call, as the engine does: build the view with the current boundary, estimate it, ask
    ``plan_compaction`` whether to move the boundary, and if so rebuild the view. Tokens count the messages only.
    """
    return simulate_run(steps, policy, result_chars=result_chars)[0]


def simulate_run(steps: int, policy: ContextPolicy | None, *, result_chars: int = RESULT_CHARS) -> tuple[int, str]:
    """:func:`simulate`'s total, and the agent's final answer."""
    messages: list[Message] = [UserMessage(text=TASK.format(steps=steps))]
    notes: dict[str, str] = {}
    memo: dict[str, Any] = {}
    upto, total = 0, 0
    while True:
        if policy is None:
            tokens = estimate_tokens(messages)
            view: list[Message] = messages
        else:
            view = compacted_view(messages, upto=upto, notes=notes, digest_chars=policy.digest_chars, memo=memo)
            tokens = estimate_tokens(view)
            boundary = plan_compaction(messages, upto=upto, prompt_tokens=tokens, policy=policy)
            if boundary is not None:
                upto = boundary
                view = compacted_view(messages, upto=upto, notes=notes, digest_chars=policy.digest_chars, memo=memo)
                tokens = estimate_tokens(view)
        total += tokens
        turn = next_turn(view, steps)
        step = sum(1 for message in messages if message.kind == "assistant") + 1
        tool_calls = tuple(
            ToolCall(id=f"call_{step}_{index}", name=c.name, arguments=c.arguments)
            for index, c in enumerate(turn.tool_calls, start=1)
        )
        messages.append(AssistantMessage(text=turn.text, tool_calls=tool_calls))
        if not tool_calls:
            return total, turn.text
        for c in tool_calls:
            assert isinstance(c.arguments, dict)
            if c.name == NOTES_TOOL_NAME:
                notes[c.arguments["key"]] = c.arguments["value"]
                content = write_note(c.arguments["key"], c.arguments["value"])
            else:
                content = lookup_result(int(c.arguments["order_id"][1:]), result_chars)
            messages.append(ToolResultMessage(call_id=c.id, name=c.name, content=content))


async def real_run(steps: int, policy: ContextPolicy | None) -> dict[str, Any]:
    """The task run by an ``Agent``: its input tokens and answer."""

    @tool(inline=True)
    def lookup_order(order_id: str) -> str:
        """Look an order up: its status, total and lines, as JSON.

        Args:
            order_id: The order's number, like #0042.
        """
        return lookup_result(int(order_id.lstrip("#")))

    settings: dict[str, Any] = {
        "name": "compaction-bench",
        "model": ScriptedModel(lambda request: next_turn(request.messages, steps)),
        "tools": [lookup_order, notes_tool()],
        "max_steps": steps + NOTE_EVERY,
        "store": MemoryStore(),
        "context": policy,  # None: the whole history every turn
    }
    agent = Agent(**settings)
    result = await agent.run(TASK.format(steps=steps))
    if result.status != "completed":
        raise RuntimeError(f"the benchmark run did not complete: {result}")
    return {"input_tokens": result.usage.input_tokens, "output": result.output, "steps": result.steps}


def measure(steps: int = STEPS, policy: ContextPolicy | None = None) -> dict[str, Any]:
    """Every figure of the benchmark, as JSON values."""
    policy = policy or ContextPolicy()
    (plain, plain_answer), (compacted, answer) = simulate_run(steps, None), simulate_run(steps, policy)
    without, with_ = asyncio.run(real_run(steps, None)), asyncio.run(real_run(steps, policy))
    figures: dict[str, Any] = {
        "steps": steps,
        "result_chars": RESULT_CHARS,
        "policy": {"max_tokens": policy.max_tokens, "keep_recent_steps": policy.keep_recent_steps},
        "simulated": {
            "without": plain,
            "with": compacted,
            "ratio": plain / compacted,
            "same_output": plain_answer == answer,
        },
        "real": {
            "without": without["input_tokens"],
            "with": with_["input_tokens"],
            "ratio": without["input_tokens"] / with_["input_tokens"],
            "same_output": without["output"] == with_["output"],
        },
        "sweep": [
            {
                "result_chars": size,
                "max_tokens": swept.max_tokens,
                "ratio": simulate(steps, None, result_chars=size) / simulate(steps, swept, result_chars=size),
            }
            for size, swept in SWEEP
        ],
    }
    return figures


def render(figures: dict[str, Any]) -> str:
    policy = figures["policy"]
    lines = [
        f"bounded context: {figures['steps']} steps, {figures['result_chars']:,}-char tool results, "
        f"max_tokens={policy['max_tokens']:,}, keep_recent_steps={policy['keep_recent_steps']}",
        f"  {'':<10}{'without':>14}{'with':>14}{'ratio':>9}  verdict (≥ {TARGET_RATIO:g}x)",
    ]
    for label, row in (("simulated", figures["simulated"]), ("real", figures["real"])):
        same = row.get("same_output", True)
        verdict = "PASS" if row["ratio"] >= TARGET_RATIO and same else "MISS"
        tail = "" if "same_output" not in row else f", same final answer: {'yes' if same else 'NO'}"
        lines.append(f"  {label:<10}{row['without']:>14,}{row['with']:>14,}{row['ratio']:>8.1f}x  {verdict}{tail}")
    lines.append(
        "  simulated, other sizes: "
        + "; ".join(
            f"{row['result_chars']:,} chars, max_tokens={row['max_tokens']:,}: {row['ratio']:.1f}x"
            for row in figures["sweep"]
        )
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compaction", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    figures = measure(args.steps)
    print(render(figures))
    out = args.out or RESULTS / f"compaction-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(f"raw figures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
