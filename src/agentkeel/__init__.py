"""agentkeel: a runtime for LLM agents that ship to production.

Every run is an append-only journal in a store; a run survives its process, resumes where it stopped, repeats
no journaled model call and fires no side effect twice.
"""

from agentkeel.agent import Agent
from agentkeel.core.budget import Budget
from agentkeel.core.compaction import ContextPolicy
from agentkeel.core.loops import LoopPolicy
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
from agentkeel.engine.operator import approve_call, cancel_run, reject_call, resolve_call
from agentkeel.errors import (
    ConfigError,
    JournalError,
    KeelError,
    Killed,
    LeaseLost,
    ModelError,
    ResolveError,
    RunBusy,
    RunIdTaken,
    RunNotFound,
    StoreError,
    ToolError,
)
from agentkeel.gates import Rule, deny, require_approval
from agentkeel.gc_tuning import restore_gc, tune_gc
from agentkeel.models.base import Model
from agentkeel.models.scripted import ScriptedModel, call, calls, reply
from agentkeel.patterns.pipeline import Pipeline, PipelineContext, StepFailed
from agentkeel.pricing import Price, PriceTable
from agentkeel.result import RunResult
from agentkeel.stores.base import Store
from agentkeel.stores.memory import MemoryStore
from agentkeel.stores.open import open_store
from agentkeel.stores.sqlite import SQLiteStore
from agentkeel.switches import kill, revive
from agentkeel.tools.notes import notes_tool
from agentkeel.tools.tool import Reconciled, RetryPolicy, Tool, ToolContext, tool

__all__ = [
    "Agent",
    "AssistantMessage",
    "Budget",
    "ConfigError",
    "ContextPolicy",
    "JournalError",
    "KeelError",
    "Killed",
    "LeaseLost",
    "LoopPolicy",
    "MemoryStore",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "Pipeline",
    "PipelineContext",
    "Price",
    "PriceTable",
    "Reconciled",
    "ResolveError",
    "RetryPolicy",
    "Rule",
    "RunBusy",
    "RunIdTaken",
    "RunNotFound",
    "RunResult",
    "RunState",
    "SQLiteStore",
    "ScriptedModel",
    "StepFailed",
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
    "approve_call",
    "call",
    "calls",
    "cancel_run",
    "deny",
    "kill",
    "notes_tool",
    "open_store",
    "reject_call",
    "reply",
    "require_approval",
    "resolve_call",
    "restore_gc",
    "revive",
    "tool",
    "tune_gc",
]
