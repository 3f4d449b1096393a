"""The ``Model`` port: a request in, a response out. Providers adapt a vendor's API to it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from agentkeel.core.messages import ModelRequest, ModelResponse


@runtime_checkable
class Model(Protocol):
    """Anything that answers a :class:`ModelRequest`.

    ``respond`` returns the model's turn (text and/or tool calls, a stop reason, token usage) or raises
    :class:`agentkeel.ModelError`; the engine turns any other exception into ``failed(model_error)`` too.
    """

    name: str
    """``provider:model`` as it appears in runs and price tables (``scripted``, ``openai:gpt-4.1-mini``)."""

    async def respond(self, request: ModelRequest) -> ModelResponse: ...
