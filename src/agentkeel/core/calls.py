"""``CallRecord``: one tool call of a run, as its journal tells it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from agentkeel.core.events import ApprovalRequested, CompensationFinished, ToolCallFinished, ToolCallStarted

CallStatus = Literal["started", "finished"]
Decision = Literal["pending", "approved", "rejected"]


@dataclass(kw_only=True, slots=True)
class CallRecord:
    """One tool call of the run, as the journal tells it: its intent, and what became of it."""

    started: ToolCallStarted
    status: CallStatus = "started"
    attempts: int = 0
    """Attempts whose outcome the journal holds no result for (failed and retried, or interrupted)."""
    retry_authorized: bool = False
    """A person allowed an interrupted call to run again."""
    finished: ToolCallFinished | None = None

    @property
    def call(self) -> str:
        """``"<step>.<index>"``."""
        return self.started.call

    @property
    def tool_call_id(self) -> str:
        return self.started.tool_call_id

    @property
    def name(self) -> str:
        return self.started.name

    @property
    def arguments(self) -> dict[str, Any]:
        return self.started.arguments

    @property
    def idempotency_key(self) -> str:
        return self.started.idempotency_key


@dataclass(kw_only=True, slots=True)
class Approval:
    """A gated call and a person's decision about it."""

    requested: ApprovalRequested
    decision: Decision = "pending"
    by: str = ""
    arguments: dict[str, Any] | None = None
    """The arguments the call runs with once approved (edited ones, or the model's)."""
    reason: str = ""
    """Why it was rejected."""

    @property
    def call(self) -> str:
        return self.requested.call

    @property
    def name(self) -> str:
        return self.requested.name


UndoStatus = Literal["pending", "started", "done", "failed", "missing", "settled"]


@dataclass(kw_only=True, slots=True)
class Undo:
    """One call's compensation in a rollback."""

    call: str
    status: UndoStatus = "pending"
    """``done``: undone; ``failed``: its compensation raised; ``missing``: the tool declares none; ``settled``: a
    person decided to leave it as it is."""
    attempts: int = 0
    finished: CompensationFinished | None = None

    @property
    def open(self) -> bool:
        """Still to run (or interrupted while running)."""
        return self.status in ("pending", "started")
