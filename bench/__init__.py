"""agentkeel's benchmarks: the engine's per-step overhead against floors measured in the same run.

Run ``make bench`` (``python -m bench``); ``python -m bench --quick`` is a smoke run. See docs/benchmarks.md.
"""
