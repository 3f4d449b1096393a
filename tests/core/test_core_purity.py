"""The pure core does no I/O: none of its modules imports one that could."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import agentkeel.core

CORE = Path(agentkeel.core.__file__).parent
FORBIDDEN = frozenset(
    {"sqlite3", "asyncio", "time", "random", "socket", "os", "httpx", "subprocess", "threading", "secrets", "io"}
)
# Inside the package the core may lean only on itself and on the errors module.
ALLOWED_OWN = ("agentkeel.core", "agentkeel.errors")


def imported_modules(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                names.append("agentkeel.core." + (node.module or ""))
            elif node.module:
                names.append(node.module)
    return names


CORE_FILES = sorted(CORE.glob("*.py"))


def test_the_core_has_modules() -> None:
    assert {p.name for p in CORE_FILES} >= {"state.py", "decide.py", "events.py", "messages.py", "codec.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_a_core_module_imports_no_io(path: Path) -> None:
    bad = [name for name in imported_modules(path) if name.split(".")[0] in FORBIDDEN]
    assert not bad, f"{path.name} imports {bad}: the core must stay pure (I/O belongs to the engine and adapters)"


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_a_core_module_imports_nothing_above_it(path: Path) -> None:
    own = [name for name in imported_modules(path) if name.startswith("agentkeel")]
    upward = [name for name in own if not name.startswith(ALLOWED_OWN)]
    assert not upward, f"{path.name} imports {upward}: imports point down only"


def test_the_errors_module_the_core_uses_is_pure_too() -> None:
    errors = CORE.parent / "errors.py"
    bad = [name for name in imported_modules(errors) if name.split(".")[0] in FORBIDDEN]
    assert not bad


def test_the_guard_catches_an_io_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import os.path\nfrom time import time\nfrom asyncio import sleep as s\n")
    assert [n.split(".")[0] for n in imported_modules(sample)] == ["os", "time", "asyncio"]
