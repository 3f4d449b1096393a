"""agentkeel: a runtime for LLM agents that ship to production.

Every run is an append-only journal in a store; a run survives its process, resumes where it stopped, repeats
no journaled model call and fires no side effect twice.
"""

from agentkeel.agent import Agent
from agentkeel.core.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ToolCall,
    ToolResultMessage,
    ToolSchema,
    Usage,
    UserMessage,
)
from agentkeel.core.state import RunState
from agentkeel.engine.operator import cancel_run, resolve_call
from agentkeel.errors import (
    ConfigError,
    JournalError,
    KeelError,
    LeaseLost,
    ModelError,
    ResolveError,
    RunBusy,
    RunNotFound,
    StoreError,
    ToolError,
)
from agentkeel.models.base import Model
from agentkeel.models.scripted import ScriptedModel, call, calls, reply
from agentkeel.pricing import Price, PriceTable
from agentkeel.result import RunResult
from agentkeel.stores.base import Store
from agentkeel.stores.memory import MemoryStore
from agentkeel.stores.open import open_store
from agentkeel.stores.sqlite import SQLiteStore
from agentkeel.tools.tool import Reconciled, RetryPolicy, Tool, ToolContext, tool

__all__ = [
    "Agent",
    "AssistantMessage",
    "ConfigError",
    "JournalError",
    "KeelError",
    "LeaseLost",
    "MemoryStore",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "Price",
    "PriceTable",
    "Reconciled",
    "ResolveError",
    "RetryPolicy",
    "RunBusy",
    "RunNotFound",
    "RunResult",
    "RunState",
    "SQLiteStore",
    "ScriptedModel",
    "Store",
    "StoreError",
    "Tool",
    "ToolCall",
    "ToolContext",
    "ToolError",
    "ToolResultMessage",
    "ToolSchema",
    "Usage",
    "UserMessage",
    "call",
    "calls",
    "cancel_run",
    "open_store",
    "reply",
    "resolve_call",
    "tool",
]
