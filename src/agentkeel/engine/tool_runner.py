"""Running one validated tool call: timeout, transient-failure retries, and failures turned into messages.

Nothing a tool does escapes from here but cancellation: ``ToolError`` becomes its own message, a timeout or an
exception becomes a message that names the tool, the problem and what the model can do. The traceback goes to
the journal (``ToolFailure.traceback``), never to the model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic_core import to_json, to_jsonable_python

from agentkeel.core.events import ToolCallFinished, ToolFailure
from agentkeel.core.record import record
from agentkeel.errors import ToolError
from agentkeel.tools.tool import Tool, ToolContext
from agentkeel.tools.validate import MAX_DEPTH, ValidCall, nested_deeper_than

OnRetry = Callable[[int, ToolFailure, float], Awaitable[None]]
"""Called after a transient failure, before the wait: (failed attempt, failure, delay in seconds)."""


@record
class ToolOutcome:
    """What a call produced: a JSON result and its text for the model, or a failure."""

    content: str
    result: Any = None
    failure: ToolFailure | None = None
    attempts: int = 1
    latency_s: float = 0.0


async def run_tool(
    call: ValidCall,
    ctx: ToolContext,
    *,
    on_retry: OnRetry,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ToolOutcome:
    """Run the call, retrying transient failures per the tool's policy; starts at attempt ``ctx.attempt``."""
    tool = call.tool
    started = time.perf_counter()
    attempt = ctx.attempt
    while True:
        failure, result, exc = await _attempt(
            call, ctx if ctx.attempt == attempt else dataclasses.replace(ctx, attempt=attempt)
        )
        if failure is None:
            return ToolOutcome(
                content=result_text(result),
                result=result,
                attempts=attempt,
                latency_s=time.perf_counter() - started,
            )
        if attempt <= tool.retry.retries and _transient(tool, failure, exc):
            delay = tool.retry.delay(attempt)
            await on_retry(attempt, failure, delay)
            await sleep(delay)
            attempt += 1
            continue
        if attempt > 1:
            failure = ToolFailure(
                kind=failure.kind,
                message=f"{failure.message} (after {attempt} attempts)",
                exception_type=failure.exception_type,
                traceback=failure.traceback,
            )
        return ToolOutcome(
            content=failure.message, failure=failure, attempts=attempt, latency_s=time.perf_counter() - started
        )


async def _attempt(call: ValidCall, ctx: ToolContext) -> tuple[ToolFailure | None, Any, BaseException | None]:
    tool = call.tool
    kwargs = call.kwargs
    try:
        if tool.timeout_s is None and tool.is_async:  # the common case, without a layer or a timeout context
            value = await (tool.fn(ctx, **kwargs) if tool.takes_ctx else tool.fn(**kwargs))
        elif tool.timeout_s is None:
            value = await _invoke(tool, ctx, kwargs)
        else:
            async with asyncio.timeout(tool.timeout_s):
                value = await _invoke(tool, ctx, kwargs)
        result = to_jsonable_python(value, fallback=str)
        if nested_deeper_than(result):
            message = (
                f"{tool.name} returned a value nested more than {MAX_DEPTH} levels deep, which cannot be journaled; "
                "the tool needs fixing: carry on without it and say so."
            )
            return ToolFailure(kind="exception", message=message, exception_type="ValueError"), None, None
        return None, result, None
    except ToolError as exc:
        return ToolFailure(kind="tool_error", message=exc.message, exception_type=_qualname(exc)), None, exc
    except TimeoutError as exc:
        if tool.timeout_s is not None and _is_our_timeout(exc):
            message = (
                f"{tool.name} did not answer within {tool.timeout_s:g}s. The service may be slow: try again once, "
                "or carry on without it and say so."
            )
            return ToolFailure(kind="timeout", message=message, exception_type="TimeoutError"), None, exc
        return _exception_failure(tool, exc), None, exc
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return _exception_failure(tool, exc), None, exc


async def _invoke(tool: Tool, ctx: ToolContext, kwargs: dict[str, Any]) -> Any:
    if tool.is_async:
        return await (tool.fn(ctx, **kwargs) if tool.takes_ctx else tool.fn(**kwargs))
    if tool.inline:
        return tool.fn(ctx, **kwargs) if tool.takes_ctx else tool.fn(**kwargs)
    if tool.takes_ctx:
        return await asyncio.to_thread(tool.fn, ctx, **kwargs)
    return await asyncio.to_thread(tool.fn, **kwargs)


def _is_our_timeout(exc: TimeoutError) -> bool:
    # asyncio.timeout raises a bare TimeoutError chained from the CancelledError it injected.
    return isinstance(exc.__cause__, asyncio.CancelledError) or not str(exc)


def _exception_failure(tool: Tool, exc: BaseException) -> ToolFailure:
    detail = str(exc) or "(no message)"
    message = (
        f"{tool.name} failed with {type(exc).__name__}: {detail[:500]}. Check the arguments; if they are right, "
        "the tool itself failed: do not retry more than once."
    )
    return ToolFailure(
        kind="exception",
        message=message,
        exception_type=_qualname(exc),
        traceback="".join(traceback.format_exception(exc)),
    )


def _transient(tool: Tool, failure: ToolFailure, exc: BaseException | None) -> bool:
    if failure.kind == "timeout":
        return tool.safe_to_repeat
    return failure.kind == "exception" and exc is not None and isinstance(exc, tool.retry.on)


def _qualname(exc: BaseException) -> str:
    return _type_name(type(exc))


def _type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def result_text(value: Any) -> str:
    """A tool's JSON result as the model reads it."""
    if isinstance(value, str):
        return value
    return to_json(value).decode()


async def no_retries(attempt: int, failure: ToolFailure, delay: float) -> None:
    raise AssertionError("a tool without retries was retried")  # run_tool retries only up to tool.retry.retries


def finished_event(call_id: str, tool_call_id: str, name: str, outcome: ToolOutcome) -> ToolCallFinished:
    """The journal's record of a call's outcome, as the call ends."""
    return ToolCallFinished(
        at=time.time(),
        call=call_id,
        tool_call_id=tool_call_id,
        name=name,
        content=outcome.content,
        result=outcome.result,
        error=outcome.failure,
        attempts=outcome.attempts,
        latency_s=outcome.latency_s,
    )
