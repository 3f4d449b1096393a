"""``AnthropicModel``: Claude through Anthropic's Messages API, with the official ``anthropic`` SDK.

``model="anthropic:claude-haiku-4-5"`` on an :class:`~agentkeel.Agent` builds one; build it yourself for the
settings (``AnthropicModel("claude-haiku-4-5", stream=True, timeout_s=120)``). The key comes from ``api_key``
or ``ANTHROPIC_API_KEY``, the server from ``base_url`` or ``ANTHROPIC_BASE_URL``. Install the SDK with
``pip install 'agentkeel[anthropic]'``.

The SDK's own retries are off (``max_retries=0``): the engine retries transient failures itself so that every
attempt is journaled and the run's deadline and budget see it. Every failure leaves ``respond`` as a
:class:`~agentkeel.ModelError` whose ``kind`` and ``retryable`` say what the engine may do about it:

    429 rate_limit_error                    rate_limit   retryable, waits for ``retry-after``
    529 overloaded_error (any status), 5xx  server       retryable
    the client's timeout, 408               timeout      retryable
    connection refused, reset or cut        connection   retryable (a stream cut short too)
    an error event inside a stream          by its error type, as if it had come with that type's status
    401 / 403                               auth         names ANTHROPIC_API_KEY
    400, 404 and other 4xx                  bad_request  the provider's own message
    anything else from the SDK              other

Translation to and from the API's messages lives in :mod:`agentkeel.models.anthropic_wire`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import anthropic
from anthropic.types import RawMessageStreamEvent

from agentkeel.core.messages import ModelRequest, ModelResponse
from agentkeel.errors import ModelError
from agentkeel.models.anthropic_wire import assemble, from_message, request_body

T = TypeVar("T")

SDK_PARAMETERS = frozenset({"model", "max_tokens", "messages", "system", "tools"})
"""Body fields ``messages.create`` takes as keywords in every SDK release."""

ERROR_STATUS: dict[str, int] = {
    # The status each documented error type comes with: an error sent inside a stream arrives after a 200.
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicModel:
    """A :class:`~agentkeel.Model` answered by Anthropic's Messages API."""

    def __init__(
        self,
        name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_output_tokens: int = 4096,
        temperature: float | None = None,
        client: anthropic.AsyncAnthropic | None = None,
        stream: bool = False,
    ) -> None:
        self.model = name.removeprefix("anthropic:")
        """The API's model id (``claude-haiku-4-5``)."""
        self.name = f"anthropic:{self.model}"
        self.timeout_s = timeout_s
        self.max_output_tokens = max_output_tokens
        """Anthropic requires a limit on every request: this one applies unless the request sets its own."""
        self.temperature = temperature
        self.stream = stream
        """Read the answer as server-sent events (long answers never hit a proxy's idle timeout)."""
        self._api_key = api_key
        self._base_url = base_url
        # A client given by the caller is used as is, but without the SDK's retries (the engine retries).
        self._client = client.with_options(max_retries=0) if client is not None else None
        self._own_client = client is None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"AnthropicModel({self.model!r}, stream={self.stream})"

    async def respond(self, request: ModelRequest) -> ModelResponse:
        client = self._sdk_client()
        body = request_body(request, model=self.model, max_tokens=self.max_output_tokens, temperature=self.temperature)
        arguments = _sdk_arguments(body)
        # Translation runs outside the guard: a fault in it is a bug to see, not a provider failure to retry.
        if self.stream:
            return assemble(await self._guarded(lambda: _read_events(client, arguments)))
        return from_message(await self._guarded(lambda: client.messages.create(**arguments)))

    async def aclose(self) -> None:
        """Close the HTTP connections of a client this model made (a caller's own client is theirs to close)."""
        client = self._client
        if client is None or not self._own_client:
            return
        self._client = None
        if self._client_loop is asyncio.get_running_loop():
            await client.close()
        # else the event loop it ran in has ended: its sockets cannot be closed through it, and are freed with it

    # -- the client -----------------------------------------------------------------------------------------

    def _sdk_client(self) -> anthropic.AsyncAnthropic:
        """Made on first use, so that configuring an agent needs no key; made again in a new event loop
        (``run_sync`` starts one per run), whose connections the old client's pool cannot use."""
        if not self._own_client:
            assert self._client is not None
            return self._client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise ModelError(
                    "no Anthropic API key: set ANTHROPIC_API_KEY (or pass AnthropicModel(api_key=...))",
                    kind="auth",
                )
            self._client = anthropic.AsyncAnthropic(
                api_key=key,
                base_url=self._base_url or os.environ.get("ANTHROPIC_BASE_URL") or None,
                timeout=self.timeout_s,
                max_retries=0,
            )
            self._client_loop = loop
        return self._client

    # -- errors ---------------------------------------------------------------------------------------------

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """Make and await an SDK call; whatever it raises (some checks of the SDK's raise before the first
        await) leaves as a :class:`ModelError`."""
        try:
            return await call()
        except anthropic.APIError as exc:
            raise self._error(exc) from exc
        except Exception as exc:  # the SDK's HTTP library, raised unwrapped by a stream read; or the SDK itself
            raise self._unexpected(exc) from exc

    def _error(self, exc: anthropic.APIError) -> ModelError:
        if isinstance(exc, anthropic.APITimeoutError):  # before APIConnectionError, its base class
            return ModelError(
                f"Anthropic did not answer within {self.timeout_s:g}s (AnthropicModel(timeout_s=...))",
                retryable=True,
                kind="timeout",
            )
        if isinstance(exc, anthropic.APIConnectionError):
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            return ModelError(f"could not reach Anthropic at {self._where()}{cause}", retryable=True, kind="connection")
        if isinstance(exc, anthropic.APIStatusError):
            return _status_error(exc)
        return ModelError(f"Anthropic's answer could not be read: {exc.message}", kind="other")

    def _unexpected(self, exc: Exception) -> ModelError:
        transport = _transport_kind(exc)
        if transport == "timeout":
            return ModelError(
                f"Anthropic stopped sending within {self.timeout_s:g}s (AnthropicModel(timeout_s=...))",
                retryable=True,
                kind="timeout",
            )
        if transport == "connection":
            return ModelError(
                f"the connection to Anthropic at {self._where()} broke: {type(exc).__name__}: {exc}",
                retryable=True,
                kind="connection",
            )
        return ModelError(f"the anthropic SDK raised {type(exc).__name__}: {exc}", kind="other")

    def _where(self) -> str:
        return str(self._client.base_url) if self._client is not None else "its API"


def _sdk_arguments(body: dict[str, Any]) -> dict[str, Any]:
    """``messages.create`` keywords for a request body: the fields every SDK release names as parameters, and
    the others (``temperature``, which the SDK's 2.x releases no longer list) passed through as ``extra_body``."""
    arguments = {key: value for key, value in body.items() if key in SDK_PARAMETERS}
    extra = {key: value for key, value in body.items() if key not in SDK_PARAMETERS}
    if extra:
        arguments["extra_body"] = extra
    return arguments


async def _read_events(client: anthropic.AsyncAnthropic, arguments: dict[str, Any]) -> list[RawMessageStreamEvent]:
    """Every event of a streamed answer (folded by :func:`assemble` once the stream has ended)."""
    stream = await client.messages.create(**arguments, stream=True)
    return [event async for event in stream]


def _status_error(exc: anthropic.APIStatusError) -> ModelError:
    error_type, said = _error_body(exc.body)
    status = exc.status_code
    if status < 400:  # an error event inside a stream that began with 200
        status = ERROR_STATUS.get(error_type, 500)
    label = f"{status} {error_type}".rstrip()
    said = said or exc.message
    request_id = exc.response.headers.get("request-id")
    where = f" (request {request_id})" if request_id else ""
    if error_type == "overloaded_error" or status == 529:
        return ModelError(
            f"Anthropic is overloaded ({label}): {said}{where}", retryable=True, status_code=status, kind="server"
        )
    if error_type == "rate_limit_error" or status == 429:
        return ModelError(
            f"Anthropic's rate limit was reached ({label}): {said}{where}",
            retryable=True,
            status_code=status,
            retry_after_s=retry_after(exc.response.headers),
            kind="rate_limit",
        )
    if status in (401, 403):
        fix = (
            "set ANTHROPIC_API_KEY to a valid key"
            if status == 401
            else "the key in ANTHROPIC_API_KEY may not use this model or feature: check its workspace"
        )
        return ModelError(f"Anthropic refused the request ({label}: {said}): {fix}", status_code=status, kind="auth")
    if status == 408:
        return ModelError(
            f"Anthropic timed out ({label}): {said}{where}", retryable=True, status_code=status, kind="timeout"
        )
    if status >= 500:
        return ModelError(
            f"Anthropic failed ({label}): {said}{where}", retryable=True, status_code=status, kind="server"
        )
    if status >= 400:
        return ModelError(f"Anthropic rejected the request ({label}): {said}", status_code=status, kind="bad_request")
    return ModelError(f"Anthropic answered {label}: {said}{where}", status_code=status, kind="other")


def _error_body(body: object) -> tuple[str, str]:
    """``error.type`` and ``error.message`` of ``{"type": "error", "error": {"type": ..., "message": ...}}``."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", body if isinstance(body, str) else ""
    error_type, message = error.get("type"), error.get("message")
    return (error_type if isinstance(error_type, str) else ""), (message if isinstance(message, str) else "")


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date), or None."""
    milliseconds = headers.get("retry-after-ms")
    seconds = headers.get("retry-after")
    try:
        if milliseconds is not None:
            return max(0.0, float(milliseconds) / 1000)
        if seconds is not None:
            return max(0.0, float(seconds))
    except ValueError:
        pass
    if seconds is None:
        return None
    try:
        when = parsedate_to_datetime(seconds)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _transport_kind(exc: Exception) -> str | None:
    """``timeout`` or ``connection`` for an error of the SDK's HTTP library (httpx, or httpx2 in SDK 2.x),
    which reading a stream raises unwrapped; None for anything else. Matched by class name so that either
    library's errors are recognised without importing the one the SDK does not use."""
    names = {cls.__name__ for cls in type(exc).__mro__ if cls.__module__.split(".")[0] in ("httpx", "httpx2")}
    if "TimeoutException" in names:
        return "timeout"
    if "TransportError" in names:
        return "connection"
    return None
