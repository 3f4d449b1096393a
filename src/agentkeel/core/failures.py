"""Why a tool call did not produce a result: a kind and the sentence the model was given."""

from __future__ import annotations

from typing import Literal

from agentkeel.core.record import record

FailureKind = Literal[
    "unknown_tool",
    "invalid_arguments",
    "timeout",
    "exception",
    "tool_error",
    "skipped",
    "disabled",
    "denied",
    "rejected",
    "over_budget",
    "budget_spent",
    "no_compensation",
    "off_plan",
]
"""Why a tool call did not produce a result."""


@record
class ToolFailure:
    """What went wrong in a tool call, for the operator (the model gets ``ToolCallFinished.content``)."""

    kind: FailureKind
    message: str
    """One line, the same sentence the model was given."""
    exception_type: str = ""
    """The qualified name of the exception, when one was raised."""
    traceback: str = ""
    """The full traceback: journal and traces only, never the model."""
