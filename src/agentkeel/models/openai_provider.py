"""``OpenAIModel``: any server that speaks OpenAI's Chat Completions API, through the official ``openai`` SDK.

OpenAI itself, and the servers that imitate it: vLLM, Ollama (``http://localhost:11434/v1``), llama.cpp's
``llama-server``, LM Studio. ``model="openai:<name>"`` on an agent makes one with the defaults below.

Where it connects, decided on first use (so that building an agent needs no key):

* the base URL: ``base_url=``, else ``OPENAI_BASE_URL``, else OpenAI's;
* the key: ``api_key=``, else ``OPENAI_API_KEY``; a server other than OpenAI's gets a placeholder when there is
  none (local servers need none, the SDK insists on one); OpenAI's without a key is an ``auth`` error at once.

Retries are the engine's: it journals each attempt and honours the run's deadline. So the SDK's own retries are
off, and every failure leaves ``respond`` as a :class:`ModelError` whose ``kind`` says whether to try again:

    what the server did                   kind          retryable   note
    429                                   rate_limit    yes         retry_after_s from retry-after(-ms)
    500 and above                         server        yes         retry_after_s when the server sends it
    408, request timed out                timeout       yes
    409 (a conflict, e.g. a lock)         other         yes
    no connection, a cut stream           connection    yes
    an error event inside a stream        server        yes
    401, 403                              auth          no          the message names OPENAI_API_KEY
    400, 404, 422, any other 4xx          bad_request   no          the server's own words (an unknown model...)
    anything else                         other         no
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import time
import weakref
from collections.abc import Mapping
from typing import Any, get_args
from urllib.parse import urlsplit

import openai

from agentkeel.core.messages import ModelRequest, ModelResponse
from agentkeel.errors import ConfigError, ModelError
from agentkeel.models.openai_wire import (
    StreamAssembly,
    StructuredOutput,
    chat_messages,
    from_completion,
    response_format,
    tool_specs,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
PLACEHOLDER_KEY = "no-key-needed"
"""Sent to servers other than OpenAI's when no key is set: the SDK refuses to run without one."""


class OpenAIModel:
    """A model served over OpenAI's Chat Completions API.

    >>> OpenAIModel("gpt-4.1-mini")                                        # OpenAI, OPENAI_API_KEY
    >>> OpenAIModel("qwen2.5:7b", base_url="http://localhost:11434/v1")    # Ollama, no key

    ``stream=True`` reads the answer as server-sent events (the same response, assembled); ``structured_output``
    says how a request's ``output_schema`` is sent (``json_schema``: enforced by the server; ``json_object``:
    JSON mode only; ``off``: not sent). ``max_output_tokens`` and ``temperature`` apply when the request does not
    set its own. ``client`` is an ``openai.AsyncOpenAI`` to use instead of making one (its retries, base URL and
    key are then its own).
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        client: openai.AsyncOpenAI | None = None,
        stream: bool = False,
        structured_output: StructuredOutput = "json_schema",
    ) -> None:
        model = name.removeprefix("openai:") if isinstance(name, str) else ""
        if not model.strip():
            raise ConfigError(f"OpenAIModel needs the server's name for the model, e.g. 'gpt-4.1-mini', not {name!r}")
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
            raise ConfigError(f"OpenAIModel({model!r}): timeout_s must be a positive number, not {timeout_s!r}")
        if structured_output not in get_args(StructuredOutput):
            raise ConfigError(
                f"OpenAIModel({model!r}): structured_output must be one of {', '.join(get_args(StructuredOutput))}, "
                f"not {structured_output!r}"
            )
        self.model = model
        """The model's name as the server knows it."""
        self.name = f"openai:{model}"
        """As runs, traces and price tables name it."""
        self.timeout_s = float(timeout_s)
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.stream = stream
        self.structured_output: StructuredOutput = structured_output
        self._base_url = base_url
        self._api_key = api_key
        self._given_client = client
        self._client: openai.AsyncOpenAI | None = None
        self._loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    def __repr__(self) -> str:
        return f"OpenAIModel({self.model!r}, base_url={self.base_url!r}, stream={self.stream})"

    @property
    def base_url(self) -> str:
        """Where requests go: the argument, else ``OPENAI_BASE_URL``, else OpenAI's."""
        if self._given_client is not None:
            return str(self._given_client.base_url).rstrip("/")
        return (self._base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip("/")

    async def respond(self, request: ModelRequest) -> ModelResponse:
        client = self._client_for_loop()
        base_url = self.base_url
        params = self._params(request, base_url)
        try:
            if self.stream:
                return await self._streamed(client, params)
            completion = await client.chat.completions.create(**params)
        except ModelError:
            raise
        except openai.OpenAIError as exc:
            raise self._error(exc, base_url, structured="response_format" in params) from exc
        except Exception as exc:  # the transport's own errors, a body that is not JSON, ...
            raise ModelError(f"{self.name} at {base_url}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(completion, openai.types.chat.ChatCompletion):
            raise ModelError(
                f"{self.name} at {base_url} answered with {type(completion).__name__}, not a chat completion: "
                "is this an OpenAI-compatible endpoint (it usually ends in /v1)?"
            )
        return from_completion(completion)

    async def aclose(self) -> None:
        """Close the connections this model opened (not those of a ``client`` it was given)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()

    # -- internals ------------------------------------------------------------------------------------------

    async def _streamed(self, client: openai.AsyncOpenAI, params: dict[str, Any]) -> ModelResponse:
        stream = await client.chat.completions.create(**params, stream=True, stream_options={"include_usage": True})
        assembly = StreamAssembly()
        async with stream:
            async for chunk in stream:
                assembly.add(chunk)
        return assembly.response()

    def _client_for_loop(self) -> openai.AsyncOpenAI:
        """The SDK client, made on first use in each event loop: its connections belong to the loop that opened
        them, and ``asyncio.run`` makes a new loop per call of ``run_sync``."""
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is None or self._loop() is not loop:
            self._client = openai.AsyncOpenAI(
                api_key=self._key(), base_url=self.base_url, timeout=self.timeout_s, max_retries=0
            )
            self._loop = weakref.ref(loop)
        return self._client

    def _key(self) -> str:
        key = self._api_key or os.environ.get("OPENAI_API_KEY")
        if key:
            return key
        if not _is_openai(self.base_url):
            return PLACEHOLDER_KEY
        raise ModelError(
            f"{self.name}: no API key: set OPENAI_API_KEY (or OPENAI_BASE_URL for a local OpenAI-compatible server)",
            kind="auth",
        )

    def _params(self, request: ModelRequest, base_url: str) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "messages": chat_messages(request)}
        if request.tools:
            params["tools"] = tool_specs(request.tools)
        limit = request.max_output_tokens if request.max_output_tokens is not None else self.max_output_tokens
        if limit is not None:
            # OpenAI's reasoning models accept only max_completion_tokens; compatible servers know max_tokens.
            params["max_completion_tokens" if _is_openai(base_url) else "max_tokens"] = limit
        temperature = request.temperature if request.temperature is not None else self.temperature
        if temperature is not None:
            params["temperature"] = temperature
        fmt = response_format(request.output_schema, self.structured_output)
        if fmt is not None:
            params["response_format"] = fmt
        return params

    def _error(self, exc: openai.OpenAIError, base_url: str, *, structured: bool) -> ModelError:
        where = f"{self.name} at {base_url}"
        if isinstance(exc, openai.APITimeoutError):  # before APIConnectionError: it is one
            return ModelError(
                f"{where} did not answer within {self.timeout_s:g}s (OpenAIModel timeout_s)",
                retryable=True,
                kind="timeout",
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = f" ({exc.__cause__})" if exc.__cause__ is not None and str(exc.__cause__) else ""
            return ModelError(
                f"cannot reach {where}: {exc.message}{cause} Is the server running, and is OPENAI_BASE_URL right?",
                retryable=True,
                kind="connection",
            )
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc, where, structured=structured)
        if isinstance(exc, openai.APIError):  # an error event inside a stream, after a 200
            return ModelError(f"{where} failed mid-stream: {_said(exc)}", retryable=True, kind="server")
        return ModelError(f"{where}: {exc}", kind="other")

    def _status_error(self, exc: openai.APIStatusError, where: str, *, structured: bool) -> ModelError:
        status, said = exc.status_code, _said(exc)
        head = f"{where} answered HTTP {status}: {said}"
        if status == 429:
            wait = retry_after_s(exc.response.headers)
            return ModelError(head, retryable=True, status_code=status, retry_after_s=wait, kind="rate_limit")
        if status >= 500:
            wait = retry_after_s(exc.response.headers)
            return ModelError(head, retryable=True, status_code=status, retry_after_s=wait, kind="server")
        if status == 408:
            return ModelError(head, retryable=True, status_code=status, kind="timeout")
        if status == 409:
            return ModelError(head, retryable=True, status_code=status, kind="other")
        if status == 401:
            hint = "set OPENAI_API_KEY to a valid key (or OPENAI_BASE_URL for a local OpenAI-compatible server)"
            return ModelError(f"{head.rstrip('.')}. The key was refused: {hint}", status_code=status, kind="auth")
        if status == 403:
            hint = f"check that the key in OPENAI_API_KEY may use model {self.model!r}"
            return ModelError(f"{head.rstrip('.')}. Access denied: {hint}", status_code=status, kind="auth")
        if status == 404:
            head += f" (does this server serve a model named {self.model!r}?)"
        elif structured and status == 400:
            head = head.rstrip(".") + (
                ". The request asked for structured output (response_format); a server that does not support "
                "structured output refuses it: pass OpenAIModel(..., structured_output='off') to leave it out"
            )
        return ModelError(head, status_code=status, kind="bad_request")


def _is_openai(base_url: str) -> bool:
    return urlsplit(base_url).hostname == "api.openai.com"


def _said(exc: openai.APIError) -> str:
    """The provider's own words: the error body's ``message``, else its text, else the SDK's summary."""
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error")
        if isinstance(message, str) and message.strip():
            return message.strip()
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return exc.message


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """How long the server asked to wait: ``retry-after-ms``, else ``retry-after`` (seconds or an HTTP date)."""
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(header)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return max(0.0, seconds) if math.isfinite(seconds) else None
    value = headers.get("retry-after")
    if value:
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            return max(0.0, email.utils.mktime_tz(parsed) - time.time())
    return None
