"""A consumer process for the kill test: ``python charging_consumer.py BUS_URL EFFECTS_FILE``.

It handles one message of ``payments`` as group ``billing`` and exits. Its handler charges a card (a line in
EFFECTS_FILE, written and synced before anything else), dedupes by message id (a redelivery finds its earlier
charge and skips it), and on a first delivery SIGKILLs its own process right after charging, before the ack.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from agentkeel.bus import Message, Worker, open_bus


def record(effects: Path, message: Message) -> None:
    """Charge once per message id: a redelivery finds its earlier charge and notes that it skipped it."""
    lines = effects.read_text().splitlines() if effects.exists() else []
    charged = any(line.startswith(f"{message.id} ") for line in lines)
    with effects.open("a") as out:
        out.write(f"{message.id} attempt={message.attempts} {'skipped' if charged else 'charged'}\n")
        out.flush()
        os.fsync(out.fileno())


async def main(url: str, effects: Path) -> int:
    bus = open_bus(url)

    async def charge(message: Message) -> list[tuple[str, Any]]:
        record(effects, message)
        if message.attempts == 1:
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-message: charged, not acked
        return [("receipts", {"charged": message.payload})]

    worker = Worker(bus, {"payments": charge}, group="billing", claim_idle_s=0.3)
    deadline = time.monotonic() + 20.0
    try:
        while time.monotonic() < deadline:
            if await worker.step(block_s=0.1):
                return 0
        return 1
    finally:
        await bus.close()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], Path(sys.argv[2]))))
