"""``@tool``: a typed Python function plus its contract.

The contract says what the engine may do with the tool: whether it changes the world (``effect``), whether a
second call with the same idempotency key is harmless (``idempotent``), how long it may take (``timeout``),
which failures are transient and retried (``retries``, ``retry_on``, ``backoff``), and, for write tools that are
not idempotent, how to find out whether an interrupted call happened (``reconcile``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin, overload

from pydantic import BaseModel, SecretStr

from agentkeel.core.messages import ToolSchema
from agentkeel.core.record import record
from agentkeel.errors import ConfigError
from agentkeel.tools.schema import build_arguments_model, json_schema, parse_docstring, takes_context

Effect = Literal["read", "write"]

_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@record
class ToolContext:
    """What a tool that takes ``ctx`` as its first parameter receives."""

    run_id: str
    call: str
    """The call's id in the run (``"<step>.<index>"``)."""
    idempotency_key: str
    """Stable for this call across retries, resumes and processes: pass it to the system you call."""
    attempt: int
    """1 for the first attempt, 2 for the first retry, ..."""
    agent: str
    deps: Any = None
    """Whatever the caller passed as ``deps=`` to ``run``/``resume`` (a database handle, a client, ...)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Reconciled:
    """What a ``reconcile`` hook found out about an interrupted call."""

    happened: bool
    """True if the effect took place (then ``result`` is what the call returned, or an equivalent)."""
    result: Any = None


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Which failures are transient and how to wait between attempts."""

    retries: int = 0
    """Extra attempts after the first one."""
    on: tuple[type[BaseException], ...] = ()
    """Exception types that are transient. Timeouts count as transient only for read or idempotent tools."""
    backoff_s: float = 0.2
    """The first wait; each next one doubles, up to ``max_backoff_s``."""
    max_backoff_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * (2 ** (attempt - 1))))


@dataclass(eq=False, kw_only=True)
class Tool:
    """A tool the model may call. Build one with :func:`tool`."""

    name: str
    description: str
    fn: Callable[..., Any] = field(repr=False)
    effect: Effect = "read"
    idempotent: bool = True
    timeout_s: float | None = None
    inline: bool = False
    """A sync tool that runs on the event loop instead of a worker thread (for quick, non-blocking functions)."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    reconcile_fn: Callable[..., Any] | None = field(default=None, repr=False)
    compensation_fn: Callable[..., Any] | None = field(default=None, repr=False)
    preview_fn: Callable[..., Any] | None = field(default=None, repr=False)
    subagent: Any = field(default=None, repr=False)
    """For a supervisor's delegation tool: the ``Agent`` it hands its task to (the engine runs it as a child)."""
    """What the call would do, computed without doing it, for dry runs (``@refund.preview``)."""
    """The call's undo, run by a rollback (``@refund.compensate``)."""
    arguments: type[BaseModel] = field(repr=False, default=BaseModel)
    takes_ctx: bool = False
    is_async: bool = False
    plain_arguments: bool = False
    """Every parameter is a str, int, float or bool: validated arguments are JSON as they are."""
    secret_params: tuple[str, ...] = ()
    """Parameters typed ``pydantic.SecretStr``: their values never reach the journal, a trace or a log."""
    schema: ToolSchema = field(repr=False, default=ToolSchema(name="", description="", parameters={}))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in unit tests)."""
        return self.fn(*args, **kwargs)

    @property
    def safe_to_repeat(self) -> bool:
        """Whether running the call again cannot cause a second effect."""
        return self.effect == "read" or self.idempotent

    def preview(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: what a call would do, without doing it (it must change nothing), for dry runs. It takes the
        tool's parameters (``ctx`` first if it wants it) and returns a description as JSON values, e.g.
        ``{"would_refund": 150.0, "to": "card ending 4242"}``."""
        if self.effect != "write":
            raise ConfigError(f"tool {self.name!r}: a read tool runs for real in a dry run; only write tools preview")
        self.preview_fn = fn
        return fn

    def compensate(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: the undo of a finished call, run by a rollback (``keel rollback``, or the agent's
        ``rollback_on`` policy) in reverse order of the calls. It takes the tool's parameters (``ctx`` first if it
        wants it; a ``result`` parameter receives what the call returned) and returns what the undo did.

        It must be safe to run twice: a rollback that crashes mid-undo runs it again on resume, with the same
        ``ctx.idempotency_key`` (the call's key plus ``:undo``). Pass that key to the system you call."""
        if self.effect != "write":
            raise ConfigError(f"tool {self.name!r}: only a write tool has something to undo; a read tool needs none")
        self.compensation_fn = fn
        return fn

    def reconcile(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorator: the hook asked whether an interrupted call happened. It takes the tool's parameters
        (``ctx`` first if it wants it) and returns :class:`Reconciled`."""
        self.reconcile_fn = fn
        return fn


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...


@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "read",
    idempotent: bool | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (),
    backoff: float = 0.2,
    inline: bool = False,
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    effect: Effect = "read",
    idempotent: bool | None = None,
    timeout: float | None = None,
    retries: int = 0,
    retry_on: tuple[type[BaseException], ...] = (),
    backoff: float = 0.2,
    inline: bool = False,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Turn a typed function (sync or async) into a :class:`Tool`.

    ``@tool`` alone declares a read-only tool. For a tool that changes the world::

        @tool(effect="write", idempotent=True, retries=2, retry_on=(ConnectionError,))
        async def issue_refund(ctx: ToolContext, order_id: str, amount_usd: float) -> dict: ...

    ``idempotent`` defaults to True for read tools and False for write tools. A sync tool runs in a worker
    thread so that it never blocks other runs; ``inline=True`` runs a quick, non-blocking sync tool (a lookup in
    memory, a computation) on the event loop instead, saving the thread hand-off (~0.1 ms a call).
    """

    def build(function: Callable[..., Any]) -> Tool:
        return make_tool(
            function,
            name=name,
            description=description,
            effect=effect,
            idempotent=idempotent,
            timeout=timeout,
            retry=RetryPolicy(retries=retries, on=retry_on, backoff_s=backoff),
            inline=inline,
        )

    if fn is not None:
        return build(fn)
    return build


def make_tool(
    function: Callable[..., Any],
    *,
    name: str | None,
    description: str | None,
    effect: Effect,
    idempotent: bool | None,
    timeout: float | None,
    retry: RetryPolicy,
    inline: bool = False,
) -> Tool:
    if isinstance(function, Tool):
        raise ConfigError(f"{function.name!r} is already a tool; apply @tool once")
    if not callable(function):
        raise ConfigError(f"@tool expects a function, got {type(function).__name__}")
    tool_name = name or function.__name__
    if not tool_name or set(tool_name) - _NAME_OK or len(tool_name) > 64:
        raise ConfigError(
            f"tool name {tool_name!r} is not accepted by model providers: use 1-64 letters, digits, _ or -"
        )
    if effect not in ("read", "write"):
        raise ConfigError(f"tool {tool_name!r}: effect must be 'read' or 'write', not {effect!r}")
    if timeout is not None and timeout <= 0:
        raise ConfigError(f"tool {tool_name!r}: timeout must be a positive number of seconds, not {timeout!r}")
    if retry.retries < 0:
        raise ConfigError(f"tool {tool_name!r}: retries must be 0 or more, not {retry.retries!r}")
    for exc_type in retry.on:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise ConfigError(f"tool {tool_name!r}: retry_on must hold exception types, got {exc_type!r}")
    is_async = inspect.iscoroutinefunction(function)
    if inline and is_async:
        raise ConfigError(f"tool {tool_name!r}: inline=True is for sync tools; an async tool already runs on the loop")
    if inline and timeout is not None:
        raise ConfigError(
            f"tool {tool_name!r}: an inline tool cannot be timed out (nothing can interrupt it on the event loop); "
            "drop inline=True to run it in a worker thread with its timeout"
        )
    doc_description, param_docs = parse_docstring(function.__doc__)
    arguments = build_arguments_model(function, tool_name, param_docs)
    tool_description = description or doc_description or tool_name.replace("_", " ")
    return Tool(
        name=tool_name,
        description=tool_description,
        fn=function,
        effect=effect,
        idempotent=(effect == "read") if idempotent is None else idempotent,
        timeout_s=timeout,
        inline=inline,
        retry=retry,
        arguments=arguments,
        takes_ctx=takes_context(function),
        is_async=is_async,
        plain_arguments=all(f.annotation in (str, int, float, bool) for f in arguments.model_fields.values()),
        secret_params=tuple(name for name, f in arguments.model_fields.items() if _is_secret(f.annotation)),
        schema=ToolSchema(name=tool_name, description=tool_description, parameters=json_schema(arguments, tool_name)),
    )


def _is_secret(annotation: Any) -> bool:
    """``SecretStr``, or an optional one."""
    return annotation is SecretStr or (
        get_origin(annotation) in (Union, UnionType) and SecretStr in get_args(annotation)
    )
