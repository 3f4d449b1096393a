"""``tune_gc``: fewer collector passes for a process driving many runs, and ``restore_gc`` to undo it."""

from __future__ import annotations

import gc

import pytest

from agentkeel import restore_gc, tune_gc
from agentkeel.gc_tuning import YOUNG_THRESHOLD


def young_passes_while_keeping(count: int) -> int:
    """Young collections made while ``count`` new lists are allocated and kept alive."""
    before = gc.get_stats()[0]["collections"]
    kept = [[] for _ in range(count)]
    passes: int = gc.get_stats()[0]["collections"] - before
    del kept
    return passes


def test_tuning_makes_young_passes_rare_and_restoring_brings_the_defaults_back() -> None:
    gc.set_threshold(700, 10, 10)
    assert young_passes_while_keeping(20_000) >= 20  # the interpreter's default: a pass every 700 allocations

    replaced = tune_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 20, 20)
    assert gc.get_freeze_count() > 0  # what was alive at start-up is out of the passes
    assert young_passes_while_keeping(20_000) == 0

    restore_gc(replaced)
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_tuning_without_freezing_leaves_the_heap_collectable() -> None:
    replaced = tune_gc(10_000, freeze=False)
    assert gc.get_threshold()[0] == 10_000 and gc.get_freeze_count() == 0
    restore_gc(replaced)


@pytest.mark.parametrize("young", [0, -5, 1.5, True, "50000"])
def test_a_bad_threshold_is_refused_with_an_example(young: object) -> None:
    before = gc.get_threshold()
    with pytest.raises(ValueError, match=r"e\.g\. 50000"):
        tune_gc(young)  # type: ignore[arg-type]
    assert gc.get_threshold() == before
