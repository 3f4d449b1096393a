"""One model turn: the call, its deadline, and journaled retries of transient failures.

Whatever the model does (answers, raises ``ModelError``, raises anything else, returns the wrong type, outlives
the run's deadline) ends here as a response or a :class:`ModelFailure` with a sentence for the operator.
Retryable errors (rate limits, server errors, timeouts, lost connections) are retried with exponential backoff,
waiting at least what the provider asked for (``retry-after``); each failed attempt is reported to
``on_retry`` before the wait, so that the driver journals it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentkeel.core.messages import ModelRequest, ModelResponse
from agentkeel.core.record import record
from agentkeel.errors import ModelError
from agentkeel.models.base import Model
from agentkeel.tools.tool import RetryPolicy

OnModelRetry = Callable[[int, ModelError, float], Awaitable[None]]
"""(failed attempt, its error, the wait before the next one)."""


@record
class ModelFailure:
    """Why a model turn produced no response."""

    deadline: bool
    """True when the run's own time limit ran out (the run then fails ``timeout``, not ``model_error``)."""
    message: str = ""


async def call_model(
    model: Model,
    request: ModelRequest,
    *,
    policy: RetryPolicy,
    remaining_s: Callable[[], float | None],
    on_retry: OnModelRetry,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> ModelResponse | ModelFailure:
    attempt = 1
    while True:
        remaining = remaining_s()
        try:
            if remaining is None:
                response = await model.respond(request)
            else:
                async with asyncio.timeout(remaining):
                    response = await model.respond(request)
        except TimeoutError:
            if remaining is not None and (remaining_s() or 0.0) <= 0.0:
                return ModelFailure(deadline=True)
            error = ModelError("the model call timed out", retryable=True, kind="timeout")
        except ModelError as exc:
            error = exc
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a provider's own exception, or a bug in a user's model
            return ModelFailure(deadline=False, message=f"the model raised {type(exc).__name__}: {exc}")
        else:
            if isinstance(response, ModelResponse):
                return response
            return ModelFailure(
                deadline=False, message=f"the model returned {type(response).__name__}, not a ModelResponse"
            )
        if not error.retryable or attempt > policy.retries:
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            return ModelFailure(deadline=False, message=f"the model failed: {error.message}{tries}")
        delay = max(policy.delay(attempt), error.retry_after_s or 0.0)
        left = remaining_s()
        if left is not None and delay >= left:
            return ModelFailure(deadline=True)  # waiting would outlive the run's time limit
        await on_retry(attempt, error, delay)
        await sleep(delay)
        attempt += 1
