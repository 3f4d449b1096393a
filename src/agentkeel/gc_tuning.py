"""Garbage-collector settings for a process that drives many runs at once (``tune_gc``).

CPython's cyclic collector makes a young pass every 700 net allocations of container objects and, every so often,
a full pass over every tracked object. A process driving thousands of concurrent runs keeps a heap that grows with
them (each parked run holds about 30 tracked objects), and the full passes walk all of it: with the interpreter's
defaults the collector takes about a quarter of the CPU with 1,000 concurrent runs and over half with 10,000
(``python -m bench.concurrency``, docs/benchmarks.md). A run leaves no cyclic garbage behind, so collecting less
often loses nothing but a little latency per pass.

``tune_gc`` is a choice the application makes at start-up, once it has imported everything: a library does not
change its host's interpreter behind its back. ``keel bus work`` makes it.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass

YOUNG_THRESHOLD = 50_000
"""Net container allocations between young passes (the interpreter's default is 700). A young pass over that many
objects takes a few milliseconds: nothing beside a model call."""

OLDER_THRESHOLDS = (20, 20)
"""Young passes per middle pass, middle passes per full pass (defaults 10, 10; a full pass also waits until the
objects promoted since the last one reach a quarter of the old generation)."""


@dataclass(frozen=True, slots=True)
class GcSettings:
    """What ``tune_gc`` replaced, for ``restore_gc``."""

    thresholds: tuple[int, int, int]
    froze: bool


def tune_gc(young: int = YOUNG_THRESHOLD, *, freeze: bool = True) -> GcSettings:
    """Set the collector up for many concurrent runs; returns the settings it replaced.

    ``young``: allocations between young passes. ``freeze``: first collect, then move every object alive now (the
    modules, classes and configuration loaded at start-up) out of the collector's passes for good
    (``gc.freeze()``): call it after the imports and the agents' construction, before the runs start.
    """
    if isinstance(young, bool) or not isinstance(young, int) or young < 1:
        raise ValueError(f"young is a number of allocations of 1 or more, e.g. {YOUNG_THRESHOLD}: got {young!r}")
    replaced = GcSettings(thresholds=gc.get_threshold(), froze=freeze)
    if freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(young, *OLDER_THRESHOLDS)
    return replaced


def restore_gc(settings: GcSettings) -> None:
    """Undo ``tune_gc``: its thresholds back, and frozen objects collectable again if it froze them."""
    if settings.froze:
        gc.unfreeze()
    gc.set_threshold(*settings.thresholds)
