"""The command-line test harness: ``keel`` run in-process against a temp store, agent files, crafted journals."""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

from agentkeel.cli.app import app
from agentkeel.core.events import ModelResponded, RunStarted, ToolCallStarted
from agentkeel.core.messages import ModelResponse, ToolCall, Usage
from agentkeel.core.state import replay
from agentkeel.stores.base import RunRow
from agentkeel.stores.sqlite import SQLiteStore

ANSI = re.compile(r"\x1b\[")

MAILER = '''
from pathlib import Path

from agentkeel import Agent, ScriptedModel, ToolContext, calls, reply, tool

OUTBOX = Path(__file__).with_name("outbox.txt")


@tool(effect="write")
def send_email(ctx: ToolContext, to: str, body: str) -> dict:
    """Send an email (not idempotent: a second call sends a second email)."""
    with OUTBOX.open("a") as box:
        box.write(f"{ctx.idempotency_key} {to}\\n")
    return {"sent": True, "to": to}


agent = Agent(
    name="mailer",
    model=ScriptedModel([calls(("send_email", {"to": "ana@example.com", "body": "hi"})), reply("Sent.")]),
    tools=[send_email],
)
'''


@dataclass
class Keel:
    """The command line, run in-process against a store in a temp directory."""

    root: Path
    store_path: Path

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.store_path}"

    def __call__(self, *args: str) -> Result:
        result = CliRunner().invoke(app, list(args))
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"keel {' '.join(args)} raised {result.exception!r}") from result.exception
        return result

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(source))
        return path

    def mailer(self) -> str:
        """An agent file with a write tool that is not idempotent; returns its reference."""
        return f"{self.write('mailer.py', MAILER)}:agent"

    def outbox(self) -> list[str]:
        path = self.root / "outbox.txt"
        return path.read_text().splitlines() if path.exists() else []

    def run_ids(self) -> list[str]:
        return [row.run_id for row in self._sync(lambda s: s.list_runs(limit=1000))]

    def events(self, run_id: str) -> list[Any]:
        return list(self._sync(lambda s: s.load(run_id)))

    def interrupted_run(
        self,
        *,
        agent_ref: str,
        arguments: tuple[dict[str, Any], ...] = ({"to": "ana@example.com", "body": "hi"},),
        hold_lease: bool = False,
        run_id: str = "",
    ) -> str:
        """A mailer run whose driver died inside ``send_email``: its journal holds the calls' intents and no
        outcome. With ``hold_lease`` the dead driver's lease has not expired yet."""
        run_id = run_id or f"{int(time.time() * 1000):011x}crafted{len(self.run_ids())}"
        now = time.time()
        first = RunStarted(
            at=now,
            run_id=run_id,
            agent="mailer",
            task="mail Ana",
            model="scripted",
            tools=("send_email",),
            agent_ref=agent_ref,
        )
        response = ModelResponse(
            tool_calls=tuple(
                ToolCall(id=f"call_1_{i}", name="send_email", arguments=args) for i, args in enumerate(arguments, 1)
            ),
            stop_reason="tool_use",
            usage=Usage(input_tokens=40, output_tokens=10),
            model="scripted",
        )
        later = [ModelResponded(at=now, step=1, response=response)]
        later += [
            ToolCallStarted(
                at=now,
                call=f"1.{i}",
                tool_call_id=f"call_1_{i}",
                name="send_email",
                arguments=args,
                idempotency_key=f"{run_id}:1.{i}",
            )
            for i, args in enumerate(arguments, 1)
        ]

        async def craft(store: SQLiteStore) -> None:
            state = replay([first])
            await store.create_run(first, RunRow.of(state), owner="dead-host:1", lease_s=30)
            for event in later:
                state.apply(event)
            await store.append(run_id, "dead-host:1", 1, later, RunRow.of(state))
            if not hold_lease:
                await store.release_lease(run_id, "dead-host:1")

        self._sync(craft)
        return run_id

    def expire_leases(self, run_id: str) -> None:
        """What the passing of time does to a dead driver's lease, without waiting for it."""

        async def expire(store: SQLiteStore) -> None:
            await store.acquire_lease(run_id, "test-clock", 1.0)
            await store.release_lease(run_id, "test-clock")

        self._sync(expire, clock=lambda: time.time() + 3600)

    def _sync(self, work: Callable[[SQLiteStore], Any], clock: Callable[[], float] = time.time) -> Any:
        async def go() -> Any:
            store = SQLiteStore(self.store_path, clock=clock)
            try:
                return await work(store)
            finally:
                await store.close()

        return asyncio.run(go())
