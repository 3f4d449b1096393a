"""The public surface is explicit: ``__all__`` is sorted and names exactly what the package exports."""

from __future__ import annotations

import importlib
import types

import agentkeel


def public_names() -> set[str]:
    return {
        name
        for name, value in vars(agentkeel).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_is_sorted() -> None:
    assert agentkeel.__all__ == sorted(agentkeel.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(agentkeel.__all__) == len(set(agentkeel.__all__))


def test_all_equals_the_exported_names() -> None:
    assert set(agentkeel.__all__) == public_names()


def test_every_name_in_all_imports() -> None:
    module = importlib.import_module("agentkeel")
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec(f"from agentkeel import {', '.join(module.__all__)}", namespace)
    assert set(module.__all__) <= set(namespace)


def test_the_everyday_names_are_there() -> None:
    for name in ("Agent", "tool", "ToolError", "ScriptedModel", "MemoryStore", "SQLiteStore", "open_store"):
        assert name in agentkeel.__all__


def test_every_error_is_a_keel_error_except_those_that_talk_to_the_model() -> None:
    errors = [
        getattr(agentkeel, name) for name in agentkeel.__all__ if name.endswith(("Error", "Busy", "Lost", "Found"))
    ]
    for error in errors:
        assert issubclass(error, Exception)
        if error not in (agentkeel.ToolError, agentkeel.ModelError):
            assert issubclass(error, agentkeel.KeelError), error
