"""A real crash: a consumer process SIGKILLs itself inside its handler, after its side effect and before its ack;
a second process takes the message over and finishes it. Durable backends only (the memory bus dies with its
process).

What this shows, precisely: delivery is at least once (the second consumer gets the message, ``attempts == 2``);
the side effect outside the bus happened in the first process and the bus cannot undo or prevent it, so the
handler dedupes it by message id; the outputs of the message (the receipt) are published once, with the ack.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import BusCase, close_case, open_case

CONSUMER = Path(__file__).parent / "charging_consumer.py"


def consumer(url: str, effects: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CONSUMER), url, str(effects)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.crash
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_consumer_killed_mid_message_is_finished_by_another_once(backend: str, tmp_path: Path) -> None:
    case = await open_case(backend, tmp_path)  # the consumer processes time idleness with the real clock
    try:
        await kill_and_take_over(case, tmp_path)
    finally:
        await close_case(case)


async def kill_and_take_over(case: BusCase, tmp_path: Path) -> None:
    effects = tmp_path / "charges.log"
    payment = await case.bus.publish("payments", {"order": 7, "eur": 30})

    first = consumer(case.url, effects)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert effects.read_text().splitlines() == [f"{payment.id} attempt=1 charged"]
    [stats] = [row for row in await case.bus.topics() if row.topic == "payments"]
    assert (stats.pending, stats.lag) == (1, 0)  # delivered, never acked

    second = consumer(case.url, effects)
    assert second.returncode == 0, second.stderr
    assert effects.read_text().splitlines() == [f"{payment.id} attempt=1 charged", f"{payment.id} attempt=2 skipped"]

    receipts = []
    while (receipt := await case.bus.consume("receipts", "audit", "a")) is not None:
        receipts.append(receipt)
        await case.bus.ack(receipt, "audit")
    assert [(r.payload, r.correlation_id, r.causation_id) for r in receipts] == [
        ({"charged": {"order": 7, "eur": 30}}, payment.id, payment.id)
    ]
    [stats] = [row for row in await case.bus.topics() if row.topic == "payments"]
    assert (stats.pending, stats.lag, stats.dead) == (0, 0, 0)
