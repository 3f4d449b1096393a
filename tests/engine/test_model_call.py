"""``call_model``: retries of transient model failures, the provider's retry-after, and the run's deadline."""

from __future__ import annotations

from agentkeel import ModelError, ModelRequest, ModelResponse, RetryPolicy, UserMessage, reply
from agentkeel.engine.model_call import ModelFailure, call_model

REQUEST = ModelRequest(instructions="", messages=(UserMessage(text="hi"),))


class Failing:
    """Raises the given errors in turn, then answers."""

    name = "failing"

    def __init__(self, *errors: ModelError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def respond(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return reply("ok")


class Waits:
    def __init__(self) -> None:
        self.retries: list[tuple[int, str, float]] = []
        self.slept: list[float] = []

    async def on_retry(self, attempt: int, error: ModelError, delay: float) -> None:
        self.retries.append((attempt, error.kind, delay))

    async def sleep(self, delay: float) -> None:
        self.slept.append(delay)


async def test_the_provider_s_retry_after_is_waited_when_longer_than_the_backoff() -> None:
    waits = Waits()
    model = Failing(
        ModelError("429", retryable=True, kind="rate_limit", retry_after_s=7.0),
        ModelError("500", retryable=True, kind="server"),
    )
    answer = await call_model(
        model,
        REQUEST,
        policy=RetryPolicy(retries=3, backoff_s=0.5),
        remaining_s=lambda: None,
        on_retry=waits.on_retry,
        sleep=waits.sleep,
    )
    assert isinstance(answer, ModelResponse) and answer.text == "ok"
    assert waits.retries == [(1, "rate_limit", 7.0), (2, "server", 1.0)]  # retry-after, then the doubled backoff
    assert waits.slept == [7.0, 1.0]


async def test_a_wait_that_would_outlive_the_run_s_deadline_ends_in_the_deadline() -> None:
    waits = Waits()
    model = Failing(ModelError("429", retryable=True, kind="rate_limit", retry_after_s=60.0))
    answer = await call_model(
        model,
        REQUEST,
        policy=RetryPolicy(retries=3, backoff_s=0.5),
        remaining_s=lambda: 5.0,
        on_retry=waits.on_retry,
        sleep=waits.sleep,
    )
    assert answer == ModelFailure(deadline=True)
    assert waits.slept == [] and model.calls == 1


async def test_an_error_that_cannot_succeed_later_is_not_retried() -> None:
    waits = Waits()
    model = Failing(ModelError("set OPENAI_API_KEY", kind="auth"))
    answer = await call_model(
        model,
        REQUEST,
        policy=RetryPolicy(retries=3),
        remaining_s=lambda: None,
        on_retry=waits.on_retry,
        sleep=waits.sleep,
    )
    assert answer == ModelFailure(deadline=False, message="the model failed: set OPENAI_API_KEY")
    assert model.calls == 1 and waits.retries == []
