"""Fixtures for the command-line tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from keel_harness import Keel


@pytest.fixture
def keel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Keel:
    monkeypatch.chdir(tmp_path)
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "KEEL_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    store_path = tmp_path / "keel.db"
    monkeypatch.setenv("KEEL_STORE", f"sqlite:///{store_path}")
    return Keel(root=tmp_path, store_path=store_path)
