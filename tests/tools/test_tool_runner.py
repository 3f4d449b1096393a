"""``run_tool``: one validated call run with its contract (thread for sync code, timeout, retries), failures as
messages for the model and tracebacks for the journal only."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from agentkeel import Tool, ToolCall, ToolContext, ToolError, tool
from agentkeel.core.events import ToolFailure
from agentkeel.engine.tool_runner import ToolOutcome, result_text, run_tool
from agentkeel.tools.validate import ValidCall, validate_call


def prepared(t: Tool, **arguments: Any) -> ValidCall:
    checked = validate_call(ToolCall(id="c1", name=t.name, arguments=arguments), {t.name: t})
    assert isinstance(checked, ValidCall), checked
    return checked


def context(attempt: int = 1, deps: Any = None) -> ToolContext:
    return ToolContext(run_id="r1", call="1.1", idempotency_key="r1:1.1", attempt=attempt, agent="a", deps=deps)


class Retries:
    """Records on_retry calls and the waits, without waiting."""

    def __init__(self) -> None:
        self.retries: list[tuple[int, ToolFailure, float]] = []
        self.waits: list[float] = []

    async def on_retry(self, attempt: int, failure: ToolFailure, delay: float) -> None:
        self.retries.append((attempt, failure, delay))

    async def sleep(self, delay: float) -> None:
        self.waits.append(delay)


async def run(t: Tool, retries: Retries | None = None, ctx: ToolContext | None = None, **arguments: Any) -> ToolOutcome:
    retries = retries or Retries()
    return await run_tool(prepared(t, **arguments), ctx or context(), on_retry=retries.on_retry, sleep=retries.sleep)


async def test_a_sync_tool_returns_its_result_as_json_text() -> None:
    @tool
    def lookup(order_id: str) -> dict[str, Any]:
        return {"order_id": order_id, "status": "shipped", "note": "café"}

    outcome = await run(lookup, order_id="#1234")
    assert outcome.failure is None
    assert outcome.result == {"order_id": "#1234", "status": "shipped", "note": "café"}
    assert outcome.content == '{"order_id":"#1234","status":"shipped","note":"café"}'
    assert outcome.attempts == 1
    assert outcome.latency_s >= 0


async def test_an_async_tool_gets_its_context() -> None:
    seen: list[ToolContext] = []

    @tool(effect="write", idempotent=True)
    async def refund(ctx: ToolContext, amount: float) -> str:
        seen.append(ctx)
        return f"refunded {amount}"

    outcome = await run(refund, ctx=context(deps={"db": 1}), amount=2.5)
    assert outcome.result == "refunded 2.5"
    assert outcome.content == "refunded 2.5"
    assert [(c.idempotency_key, c.attempt, c.deps) for c in seen] == [("r1:1.1", 1, {"db": 1})]


def test_results_that_are_not_json_become_text() -> None:
    assert result_text("plain") == "plain"
    assert result_text(None) == "null"
    assert result_text([1, "é"]) == '[1,"é"]'


async def test_a_result_that_is_not_json_native_is_converted() -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque!"

    @tool
    def odd() -> Any:
        return {"when": Opaque(), "items": (1, 2), "tags": {"a"}}

    outcome = await run(odd)
    assert outcome.result == {"when": "opaque!", "items": [1, 2], "tags": ["a"]}


async def test_a_sync_tool_runs_in_a_worker_thread_and_does_not_block_the_loop() -> None:
    loop_thread = threading.get_ident()
    released = threading.Event()
    ran_in: list[int] = []

    @tool
    def blocking() -> bool:
        ran_in.append(threading.get_ident())
        return released.wait(timeout=10)  # released by a coroutine: only possible if the loop is free

    async def release() -> None:
        await asyncio.sleep(0)
        released.set()

    outcome, _ = await asyncio.gather(run(blocking), release())
    assert outcome.result is True
    assert ran_in and ran_in[0] != loop_thread


async def test_an_inline_sync_tool_runs_on_the_event_loop_thread() -> None:
    ran_in: list[int] = []

    @tool(inline=True)
    def quick(ctx: ToolContext, order_id: str) -> dict[str, Any]:
        ran_in.append(threading.get_ident())
        return {"order_id": order_id, "key": ctx.idempotency_key}

    outcome = await run_tool(prepared(quick, order_id="#1234"), context(), on_retry=Retries().on_retry)
    assert outcome.result == {"order_id": "#1234", "key": "r1:1.1"}
    assert ran_in == [threading.get_ident()]


async def test_tool_error_reaches_the_model_verbatim() -> None:
    @tool
    def lookup(order_id: str) -> str:
        raise ToolError(f"Order {order_id} not found. Ask the customer to check the number (like #1234).")

    outcome = await run(lookup, order_id="#9")
    assert outcome.failure is not None
    assert outcome.failure.kind == "tool_error"
    assert outcome.content == "Order #9 not found. Ask the customer to check the number (like #1234)."
    assert outcome.failure.message == outcome.content
    assert outcome.failure.exception_type == "agentkeel.errors.ToolError"
    assert outcome.result is None


async def test_an_exception_gives_the_model_its_type_and_message_and_the_journal_its_traceback() -> None:
    @tool
    def lookup(order_id: str) -> str:
        return {"#1": "x"}[order_id]

    outcome = await run(lookup, order_id="#2")
    failure = outcome.failure
    assert failure is not None and failure.kind == "exception"
    assert outcome.content.startswith("lookup failed with KeyError: '#2'.")
    assert "Traceback" not in outcome.content and "File " not in outcome.content
    assert failure.exception_type == "KeyError"
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert 'return {"#1": "x"}[order_id]' in failure.traceback
    assert failure.message == outcome.content


async def test_an_exception_from_a_library_is_named_with_its_module() -> None:
    class QuotaExceeded(Exception):
        pass

    @tool
    async def fetch() -> str:
        raise QuotaExceeded()

    outcome = await run(fetch)
    assert outcome.failure is not None
    assert "fetch failed with QuotaExceeded: (no message)" in outcome.content
    assert outcome.failure.exception_type.endswith("QuotaExceeded")
    assert outcome.failure.exception_type.startswith(__name__)


async def test_an_async_tool_past_its_timeout_becomes_a_timeout_result() -> None:
    never = asyncio.Event()

    @tool(timeout=0.05)
    async def hangs() -> str:
        await never.wait()
        return "never"

    outcome = await run(hangs)
    assert outcome.failure is not None and outcome.failure.kind == "timeout"
    assert outcome.content.startswith("hangs did not answer within 0.05s.")
    assert outcome.attempts == 1


async def test_a_timeout_error_raised_by_the_tool_itself_is_an_exception() -> None:
    @tool(timeout=10)
    async def upstream() -> str:
        raise TimeoutError("upstream took too long")

    outcome = await run(upstream)
    assert outcome.failure is not None and outcome.failure.kind == "exception"
    assert "TimeoutError: upstream took too long" in outcome.content


async def test_declared_transient_failures_are_retried_with_backoff_and_each_failure_reported() -> None:
    attempts: list[int] = []

    @tool(retries=3, retry_on=(ConnectionError,), backoff=0.5)
    def flaky(ctx: ToolContext) -> str:
        attempts.append(ctx.attempt)
        if len(attempts) < 3:
            raise ConnectionError(f"reset {len(attempts)}")
        return "ok"

    retries = Retries()
    outcome = await run(flaky, retries)
    assert outcome.result == "ok" and outcome.failure is None
    assert outcome.attempts == 3
    assert attempts == [1, 2, 3]
    assert [(n, f.kind, f.exception_type, d) for n, f, d in retries.retries] == [
        (1, "exception", "ConnectionError", 0.5),
        (2, "exception", "ConnectionError", 1.0),
    ]
    assert "reset 1" in retries.retries[0][1].message
    assert retries.waits == [0.5, 1.0]


async def test_retries_stop_at_the_limit_and_say_how_many_attempts_were_made() -> None:
    @tool(retries=2, retry_on=(ConnectionError,))
    async def down() -> str:
        raise ConnectionError("refused")

    retries = Retries()
    outcome = await run(down, retries)
    assert outcome.failure is not None
    assert outcome.attempts == 3
    assert outcome.content.endswith("(after 3 attempts)")
    assert len(retries.retries) == 2 and len(retries.waits) == 2


async def test_a_subclass_of_a_declared_exception_is_transient_too() -> None:
    calls: list[int] = []

    @tool(retries=1, retry_on=(OSError,))
    def flaky() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionResetError("reset")
        return "ok"

    assert (await run(flaky)).result == "ok"


async def test_undeclared_exceptions_and_tool_errors_are_not_retried() -> None:
    calls: list[str] = []

    @tool(retries=3, retry_on=(ConnectionError,))
    def broken(kind: str) -> str:
        calls.append(kind)
        if kind == "value":
            raise ValueError("bad")
        raise ToolError("no such order")

    for kind in ("value", "tool_error"):
        retries = Retries()
        outcome = await run(broken, retries, kind=kind)
        assert outcome.failure is not None and outcome.attempts == 1
        assert retries.retries == [] and retries.waits == []
        assert "attempts" not in outcome.content
    assert calls == ["value", "tool_error"]


async def test_without_retries_a_declared_exception_is_not_retried() -> None:
    @tool(retry_on=(ConnectionError,))
    def down() -> str:
        raise ConnectionError("refused")

    retries = Retries()
    outcome = await run(down, retries)
    assert outcome.attempts == 1 and retries.retries == []


@pytest.mark.parametrize(
    ("effect", "idempotent", "retried"),
    [("read", None, True), ("write", True, True), ("write", False, False)],
)
async def test_timeouts_are_retried_only_for_tools_safe_to_repeat(effect: str, idempotent: bool, retried: bool) -> None:
    never = asyncio.Event()
    started: list[int] = []

    @tool(effect=effect, idempotent=idempotent, timeout=0.05, retries=1)  # type: ignore[call-overload]
    async def slow(ctx: ToolContext) -> str:
        started.append(ctx.attempt)
        await never.wait()
        return "never"

    retries = Retries()
    outcome = await run(slow, retries)
    assert outcome.failure is not None and outcome.failure.kind == "timeout"
    if retried:
        assert started == [1, 2]
        assert [(n, f.kind) for n, f, _ in retries.retries] == [(1, "timeout")]
        assert outcome.attempts == 2
    else:
        assert started == [1]
        assert retries.retries == []
        assert outcome.attempts == 1


async def test_a_run_resumed_mid_retries_continues_from_its_attempt() -> None:
    seen: list[int] = []

    @tool(retries=2, retry_on=(ConnectionError,))
    def flaky(ctx: ToolContext) -> str:
        seen.append(ctx.attempt)
        raise ConnectionError("down")

    retries = Retries()
    outcome = await run(flaky, retries, ctx=context(attempt=3))
    assert seen == [3]  # attempts 1 and 2 were journaled before the crash: only one is left
    assert outcome.attempts == 3
    assert retries.retries == []


async def test_cancellation_is_not_swallowed() -> None:
    entered = asyncio.Event()
    never = asyncio.Event()

    @tool
    async def waits() -> str:
        entered.set()
        await never.wait()
        return "never"

    task = asyncio.create_task(run(waits))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
