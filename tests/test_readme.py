"""The README's example is code a newcomer copies: it must run as written."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_the_readme_has_an_example() -> None:
    assert python_blocks(), "README.md lost its Python example"


def test_the_readme_example_runs_and_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    script = tmp_path / "example.py"
    script.write_text(python_blocks()[0])
    namespace = runpy.run_path(str(script), run_name="__main__")
    result = namespace["result"]
    assert result.status == "completed"
    assert result.output == "Order #1234 has shipped."
    assert result.steps == 3
    assert result.tool_errors == 1  # the bad argument, corrected after the actionable error
    assert (tmp_path / ".keel" / "keel.db").exists()
    assert "completed" in capsys.readouterr().out
