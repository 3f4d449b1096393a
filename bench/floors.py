"""The floors: what an agent step costs with no runtime at all, measured in the same run as agentkeel.

Floor A is Pattern 1 of the source article written in plain Python: call the model, validate the arguments with
pydantic, run the tool, append messages. Floor B is the same loop committing twice per step to SQLite, the least
that exactly-once needs: the intent before the tool runs, the outcome after it, each in its own transaction, with
the SQLite settings of ``SQLiteStore``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

# SQLiteStore's connection settings (src/agentkeel/stores/sqlite.py): autocommit mode driven by explicit
# BEGIN IMMEDIATE / COMMIT, WAL, synchronous=FULL, a 30 s busy timeout.
SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA busy_timeout=30000")


class LookupOrderArgs(BaseModel):
    """The arguments of the trivial tool, as a small pydantic model (extra fields refused, like agentkeel's)."""

    model_config = ConfigDict(extra="forbid")
    order_id: str


def lookup_order(order_id: str) -> dict[str, str]:
    return {"order_id": order_id, "status": "shipped"}


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Response:
    stop_reason: str
    text: str = ""
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def content(self) -> list[dict[str, Any]]:
        return [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in self.tool_calls]


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    output: Any = None
    error: str = ""


@dataclass
class AgentResult:
    success: bool
    output: str = ""
    error: str = ""
    trace: list[dict[str, Any]] = field(default_factory=list)


def scripted_llm(steps: int) -> Callable[[str, list[dict[str, Any]]], Response]:
    """A zero-latency model: a tool call per turn for ``steps`` turns, then a final answer."""
    turn = 0

    def llm(system_prompt: str, messages: list[dict[str, Any]]) -> Response:
        nonlocal turn
        turn += 1
        if turn > steps:
            return Response(stop_reason="end_turn", text="All orders have shipped.")
        call = ToolCall(id=f"call_{turn}", name="lookup_order", input={"order_id": f"#{turn:04d}"})
        return Response(stop_reason="tool_use", tool_calls=(call,))

    return llm


class Journal:
    """Two commits per tool call on a SQLite file configured like ``SQLiteStore``."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
        for pragma in SQLITE_PRAGMAS:
            self.db.execute(pragma)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS floor_events "
            "(run_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (run_id, seq))"
        )
        self.run_id = ""
        self.seq = 0

    def start(self, run_id: str) -> None:
        self.run_id, self.seq = run_id, 0

    def commit(self, record: dict[str, Any]) -> None:
        self.seq += 1
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.execute(
                "INSERT INTO floor_events (run_id, seq, data) VALUES (?, ?, ?)",
                (self.run_id, self.seq, json.dumps(record).encode()),
            )
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


class PlainAgent:
    """Pattern 1 of the article, with an optional journal that commits the intent and the outcome of each call."""

    def __init__(
        self,
        llm: Callable[[str, list[dict[str, Any]]], Response],
        *,
        max_steps: int,
        journal: Journal | None = None,
    ) -> None:
        self.llm = llm
        self.tools: dict[str, tuple[type[BaseModel], Callable[..., Any]]] = {
            "lookup_order": (LookupOrderArgs, lookup_order)
        }
        self.system_prompt = "You answer questions about orders."
        self.max_steps = max_steps
        self.journal = journal

    def run(self, task: str) -> AgentResult:
        messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
        steps = 0
        trace: list[dict[str, Any]] = []
        while steps < self.max_steps:
            response = self.llm(self.system_prompt, messages)
            trace.append({"step": steps, "response": response})
            if response.stop_reason == "end_turn":
                return AgentResult(success=True, output=response.text, trace=trace)
            if response.stop_reason == "tool_use":
                tool_results = []
                for tool_call in response.tool_calls:
                    result = self._execute_tool(tool_call)
                    tool_results.append(result)
                    trace.append({"step": steps, "tool": tool_call.name, "result": result})
                messages.append({"role": "assistant", "content": response.content})
                messages.append({"role": "user", "content": tool_results})
            steps += 1
        return AgentResult(success=False, error="max_steps_exceeded", trace=trace)

    def _execute_tool(self, tool_call: ToolCall) -> ToolResult:
        tool = self.tools.get(tool_call.name)
        if tool is None:
            return ToolResult(tool_call_id=tool_call.id, error=f"Unknown tool: {tool_call.name}")
        schema, fn = tool
        try:
            validated = schema.model_validate(tool_call.input)
        except ValidationError as exc:
            return ToolResult(tool_call_id=tool_call.id, error=f"Invalid arguments: {exc}")
        if self.journal is not None:
            self.journal.commit({"intent": tool_call.id, "name": tool_call.name, "arguments": validated.model_dump()})
        output = fn(**dict(validated))
        if self.journal is not None:
            self.journal.commit({"outcome": tool_call.id, "result": output})
        return ToolResult(tool_call_id=tool_call.id, output=output)


def time_plain_loop(steps: int, journal: Journal | None = None, run_id: str = "") -> float:
    """Seconds for one run of ``steps`` tool-calling steps and a final answer."""
    agent = PlainAgent(scripted_llm(steps), max_steps=steps + 1, journal=journal)
    if journal is not None:
        journal.start(run_id)
    started = time.perf_counter()
    result = agent.run("Where are my orders?")
    elapsed = time.perf_counter() - started
    if not result.success or len(result.trace) != 2 * steps + 1:
        raise RuntimeError(f"the plain loop did not take {steps} steps: {result.error or len(result.trace)}")
    return elapsed
