"""``keel run`` and ``keel show`` with a pipeline: its input as JSON or text, its steps in the tree."""

from __future__ import annotations

import json
from pathlib import Path

from keel_harness import Keel

PIPELINES = Path(__file__).resolve().parents[2] / "examples" / "pipelines.py"


def test_keel_runs_a_pipeline_and_shows_its_steps(keel: Keel) -> None:
    ran = keel("run", f"{PIPELINES}:router", "My parcel was never delivered", "--json")
    assert ran.exit_code == 0, ran.output
    result = json.loads(ran.output)
    assert result["status"] == "completed" and json.loads(result["output"])["branch"] == "shipping"
    shown = keel("show", result["run_id"]).output
    assert "step branch" in shown and "step shipping" in shown
    digest = keel("run", f"{PIPELINES}:digest", json.dumps(["A rose. Detail.", "B fell. Detail."]))
    assert digest.exit_code == 0 and "2 documents read" in digest.output


def test_a_name_that_is_neither_an_agent_nor_a_pipeline_is_refused(keel: Keel) -> None:
    wrong = keel("run", f"{PIPELINES}:BRANCHES", "x")
    assert wrong.exit_code == 2 and "not an Agent" in wrong.output
