"""``python -m bench.concurrency`` end to end on a small count: every store and set-up measured, every run completed
(timings not checked: they are the benchmark's business, not the suite's)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_concurrency_bench_measures_every_set_up_including_two_processes(tmp_path: Path) -> None:
    out = tmp_path / "concurrency.json"
    command = ["-m", "bench.concurrency", "--stores", "memory,sqlite", "--runs", "40", "--repeats", "1", "--out"]
    done = subprocess.run(
        [sys.executable, *command, str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())["figures"]
    measured = {(f["store"], f.get("setup")) for f in figures}
    assert measured == {("floor", None)} | {
        (store, setup) for store in ("memory", "sqlite") for setup in ("default", "tune_gc", "2 processes")
    }
    assert all(f["wall_s"] >= 0.25 for f in figures)  # 5 turns of 50 ms: nothing can finish sooner
    assert "sqlite    2 processes" in done.stdout


def test_the_timeline_says_when_each_step_began_for_every_store() -> None:
    command = ["-m", "bench.concurrency", "--stores", "memory,sqlite", "--runs", "30", "--timeline"]
    done = subprocess.run([sys.executable, *command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for store in ("memory", "sqlite"):
        section = done.stdout.split(f"  {store} (wall ")[1]
        firsts = [float(line.split("first")[1].split()[0]) for line in section.splitlines()[1:6]]
        assert [f"step {n}" in line for n, line in enumerate(section.splitlines()[1:6], 1)] == [True] * 5
        # A run's next turn begins a 50 ms turn after its last one, at the earliest (0.1 ms: the printed rounding).
        assert all(later - earlier >= 49.9 for earlier, later in itertools.pairwise(firsts))
