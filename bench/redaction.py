"""The cost of the redaction gate (`python -m bench.redaction`).

Every event a durable store writes goes through ``redactor().json_bytes``, whose gate decides whether the event's
JSON holds any anchor or known secret value (most hold none: then nothing else runs). Two gates on the same data,
measured in alternation, per event:

* **one regex** (the previous gate): one regular expression, the alternation of every anchor and value;
* **keyed** (the current gate, ``Redactor._gate``): a lookup of a rare character of each literal first, and a
  search for a literal only in data that holds two of its characters (see ``agentkeel.redaction_gate``).

On the events of a 5-step run (``bench.concurrency``'s model and tool, 120-340 bytes each) and on a 4 KB event
that is mostly prose; for ``Redactor.text``, on short texts (a task, log messages) and on that prose. Also the
whole ``json_bytes`` and the encoding of the event, for scale. Medians of the rounds' microseconds per item, each
including the same ~0.05 us of loop around the call.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from agentkeel import Agent, MemoryStore, ModelResponse
from agentkeel.core.codec import encode_event
from agentkeel.core.events import Event, ModelResponded
from agentkeel.redaction import Redactor, redactor
from bench.concurrency import SlowModel, lookup_order

PROSE = (
    "Your order #4821 left our warehouse on Tuesday and is now with the carrier. I checked the tracking history: "
    "it was scanned at the sorting centre at 06:42, loaded onto a truck at 09:15, and the estimated delivery is "
    "Thursday between 10:00 and 14:00. If nobody is home, the driver will leave a card with a reference number; "
    'you can then pick the parcel up at the nearest collection point (bring an ID). "Signed for" deliveries need a '
    "signature, so a neighbour can't take it. The invoice (EUR 129.90, VAT included) was sent to the address on "
    "file, and the refund for the damaged item, 24.50, should show up in 3-5 working days.\n\n"
    "Summary of what I did:\n1. Looked the order up by its number.\n2. Checked the carrier's status page.\n"
    "3. Confirmed the delivery window and the refund.\nLet me know if anything else comes up!\n\n"
)


SHORT_TEXTS = (  # what Redactor.text sees most: tasks, span attributes, log messages
    "Look order #0042 up and tell me where it is.",
    "lookup_order",
    "run 1a20d026866f82a39fc: step 3 committed (2 events)",
    "tool lookup_order failed: KeyError('order_id'); retrying in 0.5 s (attempt 2 of 3)",
    "completed",
)


async def _run_events() -> list[Event]:
    store = MemoryStore()
    agent = Agent(name="x", model=SlowModel(0.0), tools=[lookup_order], store=store)
    result = await agent.run("task")
    return await store.load(result.run_id)


def prose(size: int = 4000) -> str:
    return (PROSE * (size // len(PROSE) + 1))[:size]


def prose_event(size: int = 4000) -> bytes:
    """A model response of ``size`` characters of prose."""
    event = ModelResponded(at=1795514591.33, step=3, response=ModelResponse(text=prose(size)), latency_s=1.25)
    return encode_event(event)


def one_regex(red: Redactor) -> tuple[Callable[[bytes], Any], Callable[[str], Any]]:
    """The previous gate: one alternation of every anchor and value, longest first (its search, bytes and text)."""
    anchors = [anchor for anchor, _ in red._bytes if anchor is not None]
    literals = sorted({*anchors, *red._value_bytes}, key=len, reverse=True)
    texts = sorted({*(anchor.decode() for anchor in anchors), *red._values}, key=len, reverse=True)
    return (
        re.compile(b"|".join(re.escape(literal) for literal in literals)).search,
        re.compile("|".join(re.escape(text) for text in texts)).search,
    )


def per_item_us(fn: Callable[[Any], Any], items: Sequence[Any], number: int) -> float:
    return timeit.timeit(lambda: [fn(item) for item in items], number=number) / number / len(items) * 1e6


def measure(rounds: int = 15) -> dict[str, dict[str, float]]:
    red = redactor()
    gate: Callable[[Any], bool] | None = red._gate
    gate_text: Callable[[Any], bool] | None = red._gate_text
    if gate is None or gate_text is None:
        raise SystemExit("the process's redactor has a pattern without an anchor: it has no gate")
    old, old_text = one_regex(red)
    run = asyncio.run(_run_events())
    events, big, text, short = [encode_event(event) for event in run], [prose_event()], [prose()], SHORT_TEXTS
    checks = ((events, gate, old), (big, gate, old), (text, gate_text, old_text), (short, gate_text, old_text))
    for datas, new, previous in checks:
        if any(new(data) != (previous(data) is not None) for data in datas):
            raise SystemExit("the two gates disagree on some data: the keyed gate is wrong")
    cases: dict[str, list[tuple[str, Callable[[Any], Any], Sequence[Any], int]]] = {
        f"{len(events)} events of a run (~{sum(map(len, events)) // len(events)} B)": [
            ("one regex", old, events, 2000),
            ("keyed", gate, events, 2000),
            ("json_bytes", red.json_bytes, events, 2000),
            ("encode_event", encode_event, run, 2000),
        ],
        f"a prose event ({len(big[0])} B)": [
            ("one regex", old, big, 300),
            ("keyed", gate, big, 300),
        ],
        f"Redactor.text, {len(short)} short texts (~{sum(map(len, short)) // len(short)} chars)": [
            ("one regex", old_text, short, 5000),
            ("keyed", gate_text, short, 5000),
        ],
        f"Redactor.text, the prose ({len(text[0])} chars)": [
            ("one regex", old_text, text, 300),
            ("keyed", gate_text, text, 300),
        ],
    }
    samples: dict[str, dict[str, list[float]]] = {case: {name: [] for name, *_ in rows} for case, rows in cases.items()}
    for round_ in range(rounds):
        for case, rows in cases.items():
            ordered = rows if round_ % 2 == 0 else rows[::-1]  # alternate which goes first
            for name, fn, items, number in ordered:
                samples[case][name].append(per_item_us(fn, items, number))
    return {
        case: {name: statistics.median(values) for name, values in by_name.items()} for case, by_name in samples.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redaction", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (default 15)")
    args = parser.parse_args(argv)
    for case, medians in measure(args.rounds).items():
        print(case)
        before, after = medians["one regex"], medians["keyed"]
        for name, value in medians.items():
            print(f"  {name:<13} {value:8.3f} us")
        print(f"  gate: {before / after:.1f}x cheaper")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
