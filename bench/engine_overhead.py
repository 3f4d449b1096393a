"""agentkeel's per-step cost: an ``Agent`` with a zero-latency ``ScriptedModel`` and a trivial typed tool.

The script calls the tool for ``steps`` turns and then answers; a run's time divided by its steps is the cost of
one step (a model turn, the call, and what is journaled: for a write, the intent before the call and the outcome
after it; for a read, both in one commit after the call). The tool comes in an async and a sync flavour: a sync
tool runs in a worker thread. ``MinimalModel`` plays the same turns as the script without
``ScriptedModel``'s bookkeeping, to tell the engine's cost apart from the scripted model's.
"""

from __future__ import annotations

import time
from pathlib import Path

from agentkeel import (
    Agent,
    MemoryStore,
    ModelRequest,
    ModelResponse,
    ScriptedModel,
    SQLiteStore,
    Store,
    Tool,
    ToolCall,
    Usage,
    call,
    reply,
    tool,
)


async def _lookup_order_async(order_id: str) -> dict[str, str]:
    """Look an order up.

    Args:
        order_id: The order's number, like #1234.
    """
    return {"order_id": order_id, "status": "shipped"}


def _lookup_order_sync(order_id: str) -> dict[str, str]:
    """Look an order up.

    Args:
        order_id: The order's number, like #1234.
    """
    return {"order_id": order_id, "status": "shipped"}


def lookup_tool(kind: str, *, write: bool = False) -> Tool:
    """The trivial tool, ``async``, ``sync`` (in a worker thread) or ``inline`` (sync, on the event loop), named
    ``lookup_order`` whichever it is; ``write=True`` declares it a write (idempotent), journaled like one."""
    fn = _lookup_order_async if kind == "async" else _lookup_order_sync
    return tool(name="lookup_order", inline=kind == "inline", effect="write" if write else "read", idempotent=True)(fn)


def tool_calling_script(steps: int) -> ScriptedModel:
    """A tool call per turn for ``steps`` turns, then a final answer; the turn follows from the conversation so
    that a resumed run gets the turn it would have got."""

    def script(request: ModelRequest) -> ModelResponse:
        done = (len(request.messages) - 1) // 2  # the task, then a call and its result per step
        if done < steps:
            return call("lookup_order", order_id=f"#{done + 1:04d}")
        return reply("All orders have shipped.")

    return ScriptedModel(script)


class MinimalModel:
    """The least a ``Model`` does: the script's turns with their usage given, nothing counted or estimated."""

    name = "minimal"
    _usage = Usage(input_tokens=100, output_tokens=10)

    def __init__(self, steps: int) -> None:
        self._steps = steps

    async def respond(self, request: ModelRequest) -> ModelResponse:
        done = (len(request.messages) - 1) // 2
        if done < self._steps:
            wanted = ToolCall(id=f"call_{done + 1}", name="lookup_order", arguments={"order_id": f"#{done + 1:04d}"})
            return ModelResponse(tool_calls=(wanted,), stop_reason="tool_use", usage=self._usage, model=self.name)
        return ModelResponse(text="All orders have shipped.", usage=self._usage, model=self.name)


def bench_agent(
    *, steps: int, store: Store, tool_kind: str = "async", minimal: bool = False, write: bool = False
) -> Agent:
    return Agent(
        name="bench",
        instructions="You answer questions about orders.",
        model=MinimalModel(steps) if minimal else tool_calling_script(steps),
        tools=[lookup_tool(tool_kind, write=write)],
        max_steps=steps + 1,
        store=store,
    )


async def time_agent_run(agent: Agent, steps: int) -> float:
    """Seconds for one run, from ``agent.run`` to its result."""
    started = time.perf_counter()
    result = await agent.run("Where are my orders?")
    elapsed = time.perf_counter() - started
    if result.status != "completed" or result.steps != steps + 1:
        raise RuntimeError(f"the agent did not complete {steps} steps: {result}")
    return elapsed


def memory_agent(steps: int, tool_kind: str = "async", *, minimal: bool = False) -> Agent:
    return bench_agent(steps=steps, store=MemoryStore(), tool_kind=tool_kind, minimal=minimal)


def sqlite_agent(steps: int, path: Path, *, write: bool = False) -> Agent:
    return bench_agent(steps=steps, store=SQLiteStore(path), write=write)
