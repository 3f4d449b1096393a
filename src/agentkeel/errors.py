"""Every exception agentkeel defines, in one place.

Errors have two audiences. Exceptions that *talk to the model* never reach the caller: the engine turns them
into a tool result the model can act on. Exceptions that *stop the caller* say what was wrong and how to fix it.

    Exception
    ├── ToolError            raised by a tool; its message goes to the model verbatim (talks to the model)
    ├── ModelError           raised by a model adapter; ends the run failed(model_error) (never reaches the caller)
    └── KeelError            everything agentkeel raises to its caller
        ├── ConfigError      the caller's own setup is wrong: a tool's signature, an agent's settings, a model name,
        │                    a missing optional dependency (the message names the extra to install)
        ├── RunNotFound      no run with that id in the store
        ├── RunBusy          another live process drives the run (its lease has not expired)
        ├── LeaseLost        this process lost the run to another one while driving it; it stops at once
        ├── ResolveError     a person's decision does not fit the run (``keel resolve`` on a call that is not
        │                    interrupted, say)
        ├── JournalError     a journal that is corrupt or does not fit the agent that replays it
        ├── Killed           a kill switch on the agent (or on everything) refused to start a run
        └── StoreError       the store cannot be opened, or its schema is newer than this version of agentkeel
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentkeel.stores.base import Switch


class ToolError(Exception):
    """Raise in a tool to give the model an actionable message, e.g. ``ToolError("Order #12 not found: use #NNNN")``.

    The message reaches the model as the tool's result, marked as an error; the run goes on.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ModelError(Exception):
    """A model call failed.

    ``retryable`` says whether the same request may succeed later (rate limits, server errors, timeouts, lost
    connections); the engine retries those with backoff, waiting at least ``retry_after_s`` when the provider said
    so, and journals every attempt. Anything else (authentication, a bad request) ends the run at once. The
    message is for the operator: the provider's own words, and what to set or change.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        kind: str = "other",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.kind = kind
        """``rate_limit``, ``server``, ``timeout``, ``connection``, ``auth``, ``bad_request``, ``other``."""


class KeelError(Exception):
    """Base of every error agentkeel raises to its caller."""


class ConfigError(KeelError):
    """The caller's own setup is wrong; the message says what and how to fix it."""


class RunNotFound(KeelError):
    """No run with this id in the store."""

    def __init__(self, run_id: str, store: str = "") -> None:
        where = f" in {store}" if store else ""
        super().__init__(f"no run {run_id!r}{where}: `keel runs` lists the runs of a store (--store / KEEL_STORE)")
        self.run_id = run_id


class RunBusy(KeelError):
    """Another live process drives this run."""

    def __init__(self, run_id: str, owner: str, expires_in_s: float) -> None:
        super().__init__(
            f"run {run_id} is being driven by {owner}; its lease expires in {expires_in_s:.0f}s if that process "
            "has died. Wait for it to finish, or resume again after the lease expires."
        )
        self.run_id = run_id
        self.owner = owner
        self.expires_in_s = expires_in_s


class LeaseLost(KeelError):
    """This process no longer holds the run's lease: another process took it over."""

    def __init__(self, run_id: str, owner: str) -> None:
        super().__init__(f"run {run_id}: {owner} lost its lease to another process and stopped driving the run")
        self.run_id = run_id


class ResolveError(KeelError):
    """A decision about an interrupted call does not fit the run."""


class JournalError(KeelError):
    """A journal that is corrupt, or that does not fit the agent replaying it."""


class Killed(KeelError):
    """A kill switch on the run's agent, or on everything, is in force: the run was not started."""

    def __init__(self, switch: Switch, agent: str) -> None:
        what, undo = ("every agent", "--all") if switch.scope == "all" else (f"agent {agent!r}", f"--agent {agent}")
        since = datetime.fromtimestamp(switch.at, UTC).strftime("%Y-%m-%d %H:%M UTC")  # reads no clock
        super().__init__(
            f"{what} is disabled by {switch.by} since {since} ({switch.reason}), so no new run of {agent!r} "
            f"starts; `keel kill --clear {undo}` enables it again"
        )
        self.switch = switch
        self.agent = agent


class StoreError(KeelError):
    """The store cannot be opened or used."""


class RunIdTaken(StoreError):
    """``create_run``: the store already holds a run with this id (nothing was written)."""

    def __init__(self, run_id: str, url: str) -> None:
        super().__init__(f"a run with id {run_id!r} already exists in {url}")
        self.run_id = run_id
        self.url = url
