"""``python -m bench.redaction`` runs end to end: both gates agree on its data, and it reports every case."""

from __future__ import annotations

import pytest

from bench import redaction


def test_the_redaction_bench_reports_both_gates_on_every_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert redaction.main(["--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("gate: ") == 4
    assert out.count("one regex") == 4 and out.count("keyed") == 4
