"""``python -m bench``: measure, print the table, write the raw figures to ``bench/results/``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from bench import compaction
from bench.report import render, render_markdown, report
from bench.suite import QUICK, Settings, run_suite

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure agentkeel's per-step overhead against floors measured in the same run.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: few steps, two rounds")
    defaults = Settings()
    parser.add_argument("--steps", type=int, help=f"tool-calling steps per run (default {defaults.steps})")
    parser.add_argument(
        "--resume-steps", type=int, help=f"steps in the resumed run's journal (default {defaults.resume_steps})"
    )
    parser.add_argument("--rounds", type=int, help=f"measured rounds (default {defaults.rounds})")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as Markdown")
    parser.add_argument("--out", type=Path, help="where to write the JSON (default bench/results/bench-<date>.json)")
    parser.add_argument(
        "--profile",
        choices=("memory", "minimal", "sqlite"),
        help="instead of the suite, profile one agentkeel run and print where a step's time goes",
    )
    args = parser.parse_args(argv)

    settings = QUICK if args.quick else Settings()
    changes = {"steps": args.steps, "resume_steps": args.resume_steps, "rounds": args.rounds}
    settings = dataclasses.replace(settings, **{key: value for key, value in changes.items() if value is not None})

    if args.profile:
        from bench.profile import profile

        print(profile(args.profile, steps=settings.steps))
        return 0

    started = time.perf_counter()
    samples = run_suite(settings, progress=lambda what: print(f"  {what}", file=sys.stderr, flush=True))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result = report(samples, settings, date=stamp)
    result["duration_s"] = time.perf_counter() - started
    print(render(result))
    result["compaction"] = compaction.measure()
    print(f"\n{compaction.render(result['compaction'])}")
    if args.markdown:
        print(f"\n{render_markdown(result)}")

    out = args.out or RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nraw figures: {out} ({result['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
