"""A stand-in for api.anthropic.com on 127.0.0.1: real HTTP, the Messages API's real response shapes.

A test queues replies (a message, an error, a stream of server-sent events), drives the real ``anthropic`` SDK
at the server, and reads back every request the SDK sent. The shapes follow Anthropic's API reference:

* a message: ``{"id": "msg_...", "type": "message", "role": "assistant", "content": [blocks], "model": ...,
  "stop_reason": ..., "stop_sequence": null, "usage": {"input_tokens", "cache_creation_input_tokens",
  "cache_read_input_tokens", "cache_creation": {...}, "output_tokens", "service_tier"}}``, with a
  ``request-id`` header;
* an error: ``{"type": "error", "error": {"type": "rate_limit_error", "message": ...}, "request_id": "req_..."}``
  with the status of its type (429 here, 529 for ``overloaded_error``), ``retry-after`` on rate limits;
* a stream: ``message_start`` (empty content, null stop reason), then per block ``content_block_start``, its
  ``text_delta`` or ``input_json_delta`` fragments (the first fragment of a tool input is empty, as the API
  sends it) and ``content_block_stop``, a ``ping``, then ``message_delta`` (stop reason, cumulative usage) and
  ``message_stop``; sent with chunked transfer encoding, one event per chunk, so the SDK reads it incrementally.

Stdlib only: a ``ThreadingHTTPServer`` in a daemon thread, on a free port the OS picks.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "claude-haiku-4-5-20251001"
_ids = itertools.count(1)


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    """Lower-case names."""
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        """The key as the SDK sent it: ``x-api-key``, or ``Authorization: Bearer`` (the SDK's 2.x releases)."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        authorization = self.headers.get("authorization", "")
        return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


@dataclass(frozen=True)
class Reply:
    """What the server answers to one request."""

    status: int = 200
    body: Any = None
    """JSON, for a plain reply."""
    headers: dict[str, str] = field(default_factory=dict)
    events: tuple[tuple[str, dict[str, Any]], ...] | None = None
    """Server-sent events ``(name, data)``, for a stream."""
    cut_after: int | None = None
    """Drop the connection after this many events, mid-body."""
    hold: bool = False
    """Answer nothing until the server stops (for client timeouts)."""


# -- shapes ---------------------------------------------------------------------------------------------------


def text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def tool_use_block(call_id: str, name: str, tool_input: dict[str, Any] | str) -> dict[str, Any]:
    """A ``tool_use`` block; in a stream, ``tool_input`` may be raw JSON text (sent as is, malformed or not)."""
    return {"type": "tool_use", "id": call_id, "name": name, "input": tool_input}


def usage(
    input_tokens: int = 25, output_tokens: int = 12, *, cache_write: int = 0, cache_read: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": cache_write,
        "cache_read_input_tokens": cache_read,
        "cache_creation": {"ephemeral_5m_input_tokens": cache_write, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }


def _request_id() -> str:
    return f"req_011CS{next(_ids):019d}"


def message_body(
    *content: dict[str, Any], stop_reason: str = "end_turn", use: dict[str, Any] | None = None, model: str = MODEL
) -> dict[str, Any]:
    return {
        "id": f"msg_01{next(_ids):022d}",
        "type": "message",
        "role": "assistant",
        "content": list(content),
        "model": model,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": use or usage(),
    }


def message(
    *content: dict[str, Any], stop_reason: str = "end_turn", use: dict[str, Any] | None = None, model: str = MODEL
) -> Reply:
    body = message_body(*content, stop_reason=stop_reason, use=use, model=model)
    return Reply(body=body, headers={"request-id": _request_id()})


ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def error(error_type: str, text: str, *, status: int | None = None, headers: dict[str, str] | None = None) -> Reply:
    request_id = _request_id()
    body = {"type": "error", "error": {"type": error_type, "message": text}, "request_id": request_id}
    return Reply(
        status=status or ERROR_STATUS[error_type], body=body, headers={"request-id": request_id, **(headers or {})}
    )


def stream(
    *content: dict[str, Any],
    stop_reason: str = "end_turn",
    use: dict[str, Any] | None = None,
    model: str = MODEL,
    cut_after: int | None = None,
    error_after: tuple[int, str, str] | None = None,
) -> Reply:
    """The event sequence of a streamed message holding ``content``.

    ``error_after=(n, type, message)`` puts an ``error`` event after the first ``n`` events, as the API does when
    it fails mid-stream (the HTTP status was already 200).
    """
    final = use or usage()
    start_usage = {**final, "output_tokens": 1}
    start = message_body(stop_reason="", use=start_usage, model=model)
    start["stop_reason"] = None
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": start})]
    for index, block in enumerate(content):
        if block["type"] == "text":
            opening: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in _pieces(block["text"])]
        else:
            opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = block["input"] if isinstance(block["input"], str) else json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in ["", *_pieces(raw, 3)]]
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": opening})
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events.extend(
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}) for delta in deltas
        )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    delta_usage = {
        key: final[key] for key in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    }
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {**delta_usage, "output_tokens": final["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    if error_after is not None:
        count, error_type, text = error_after
        failure = {"type": "error", "error": {"type": error_type, "message": text}}
        events = [*events[:count], ("error", failure)]
    return Reply(events=tuple(events), headers={"request-id": _request_id()}, cut_after=cut_after)


def _pieces(text: str, size: int = 7) -> list[str]:
    """Fragments of a few characters, as the API sends deltas (a tool input's JSON split mid-token)."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# -- the server -----------------------------------------------------------------------------------------------


class AnthropicServer:
    """Answers ``POST /v1/messages`` with the queued replies, in order, and records every request."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._replies: deque[Reply] = deque()
        self._fallback: Reply | None = None
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.anthropic = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="anthropic-server", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order."""
        with self._lock:
            self._replies.extend(replies)

    def always(self, reply: Reply) -> None:
        """Answer with this once the queue is empty (a failure that persists)."""
        self._fallback = reply

    def start(self) -> AnthropicServer:
        self._thread.start()
        return self

    def __enter__(self) -> AnthropicServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def next_reply(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            if received.path != "/v1/messages":
                return error("not_found_error", f"Not found: {received.path}")
            if self._replies:
                return self._replies.popleft()
        if self._fallback is not None:
            return self._fallback
        return error("api_error", f"the test server has no reply queued for request {len(self.requests)}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real API; chunked streams need it

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        server: AnthropicServer = self.server.anthropic  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        received = Received(
            method="POST",
            path=self.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=json.loads(raw) if raw else {},
        )
        reply = server.next_reply(received)
        if reply.hold:
            server._released.wait(timeout=30)
            self.close_connection = True
            return
        if reply.events is not None:
            self._stream(reply)
            return
        payload = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, reply: Reply) -> None:
        assert reply.events is not None
        self.send_response(200)
        self.send_header("content-type", "text/event-stream; charset=utf-8")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        for count, (name, data) in enumerate(reply.events):
            if reply.cut_after is not None and count == reply.cut_after:
                self.wfile.flush()
                self.close_connection = True  # no terminating chunk: the body ends mid-way
                return
            chunk = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
