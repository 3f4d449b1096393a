"""A local OpenAI-compatible server for wire tests: real HTTP on 127.0.0.1, real Chat Completions shapes.

Each test queues the answers the server gives, in order, and reads back the requests it received (what the SDK
put on the wire). The bodies follow the API reference for ``POST /v1/chat/completions``: the ``chat.completion``
object (``choices[].message`` with ``content``, ``refusal``, ``tool_calls``; ``finish_reason``; ``usage`` with
``prompt_tokens_details.cached_tokens``), the ``chat.completion.chunk`` stream (``data: {...}`` events, tool-call
fragments keyed by ``index``, a final usage chunk with no choices, ``data: [DONE]``) and the error object
(``{"error": {"message", "type", "param", "code"}}``).

    with FakeOpenAI() as server:
        server.queue(calls(function_call("call_1", "get_order", {"order_id": "#1234"})), text("It shipped."))
        model = OpenAIModel("test-model", base_url=server.url)
        ...
        server.requests[0].body["messages"]
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "test-model-2025-04-14"
"""The model name the server reports in its answers (a dated snapshot, as OpenAI does)."""
CREATED = 1_741_569_952
FINGERPRINT = "fp_7a2e4a8a71"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: a JSON body, or a stream of chunks sent as server-sent events."""

    status: int = 200
    body: Any = None
    chunks: Sequence[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    done: bool = True
    """Whether a stream ends with ``data: [DONE]`` (False: the connection is cut after the chunks)."""
    stall: bool = False
    """Answer nothing until the server stops (for client timeouts)."""


@dataclass(frozen=True)
class Received:
    """A request as the server got it."""

    path: str
    headers: dict[str, str]
    body: Any


class FakeOpenAI:
    """The server. A request with no reply queued gets a 500 and counts in ``unexpected``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.unexpected = 0
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-openai", daemon=True
        )

    @property
    def url(self) -> str:
        """The base URL, as OPENAI_BASE_URL takes it."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._replies)

    def bodies(self) -> list[Any]:
        return [request.body for request in self.requests]

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _next(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if self._replies:
                return self._replies.popleft()
            self.unexpected += 1
        return error(500, "the fake server has no reply queued for this request", "server_error")


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection: a stream ends when the connection closes

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            body = json.loads(raw) if raw else None
            headers = {key.lower(): value for key, value in self.headers.items()}
            reply = server._next(Received(path=self.path, headers=headers, body=body))
            if reply.stall:
                server._stop.wait()
                return
            if reply.chunks is not None:
                self._stream(reply)
            else:
                self._json(reply)

        def _json(self, reply: Reply) -> None:
            data = json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-request-id", f"req_{len(server.requests)}")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, reply: Reply) -> None:
            self.send_response(reply.status)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            for chunk in reply.chunks or ():
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            if reply.done:
                self.wfile.write(b"data: [DONE]\n\n")

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler


# -- answers: the chat.completion object -------------------------------------------------------------------


def usage(prompt: int = 52, completion: int = 18, cached: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(
    *,
    content: str | None,
    tool_calls: Sequence[dict[str, Any]] = (),
    finish_reason: str,
    refusal: str | None = None,
    used: dict[str, Any] | None = None,
    model: str = MODEL,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal, "annotations": []}
    if tool_calls:
        message["tool_calls"] = list(tool_calls)
    return {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": used if used is not None else usage(),
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def function_call(call_id: str, name: str, arguments: dict[str, Any] | str) -> dict[str, Any]:
    """A tool call as OpenAI sends it: the arguments are JSON *text* (a str is sent as is, malformed or not)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def text(content: str, *, finish_reason: str = "stop", used: dict[str, Any] | None = None) -> Reply:
    return Reply(body=completion(content=content, finish_reason=finish_reason, used=used))


def calls(*tool_calls: dict[str, Any], content: str | None = None, finish_reason: str = "tool_calls") -> Reply:
    return Reply(body=completion(content=content, tool_calls=tool_calls, finish_reason=finish_reason))


def error(
    status: int, message: str, kind: str, *, code: str | None = None, headers: dict[str, str] | None = None
) -> Reply:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Reply(status=status, body=body, headers=headers or {})


RATE_LIMITED = (
    "Rate limit reached for test-model in organization org-abc on tokens per min (TPM): Limit 30000, Used 29812, "
    "Requested 1203. Please try again in 2.03s."
)
SERVER_ERROR = "The server had an error while processing your request. Sorry about that!"
BAD_KEY = (
    "Incorrect API key provided: sk-wrong. You can find your API key at https://platform.openai.com/account/api-keys."
)


def rate_limited(**headers: str) -> Reply:
    """429: ``rate_limited(**{"retry-after": "0"})``."""
    return error(429, RATE_LIMITED, "tokens", code="rate_limit_exceeded", headers=headers)


def server_error(status: int = 500, **headers: str) -> Reply:
    return error(status, SERVER_ERROR, "server_error", headers=headers)


def unauthorized() -> Reply:
    return error(401, BAD_KEY, "invalid_request_error", code="invalid_api_key")


def unknown_model(name: str, status: int = 404) -> Reply:
    message = f"The model `{name}` does not exist or you do not have access to it."
    return error(status, message, "invalid_request_error", code="model_not_found")


# -- answers: the chat.completion.chunk stream -------------------------------------------------------------


def chunk(
    delta: dict[str, Any] | None = None, *, finish_reason: str | None = None, used: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One chunk; ``delta=None`` makes the final usage chunk, whose ``choices`` is empty."""
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
        "choices": choices,
        "usage": used,
    }


def streamed_text(*pieces: str, finish_reason: str = "stop", used: dict[str, Any] | None = None) -> Reply:
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    chunks += [chunk({}, finish_reason=finish_reason), chunk(None, used=used or usage())]
    return Reply(chunks=chunks)


def streamed_calls(
    *fragments: tuple[int, str, str, str], content: str | None = None, used: dict[str, Any] | None = None
) -> Reply:
    """Tool calls as a stream sends them: ``(index, id, name, arguments piece)`` fragments, in the order given.
    The first fragment of a call carries its id, type and name; later ones only ``index`` and an arguments piece."""
    chunks = [chunk({"role": "assistant", "content": content, "refusal": None})]
    seen: set[int] = set()
    for index, call_id, name, piece in fragments:
        if index in seen:
            part: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
        else:
            seen.add(index)
            part = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": piece}}
        chunks.append(chunk({"tool_calls": [part]}))
    chunks += [chunk({}, finish_reason="tool_calls"), chunk(None, used=used or usage())]
    return Reply(chunks=chunks)
