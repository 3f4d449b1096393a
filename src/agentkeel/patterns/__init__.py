"""The multi-agent patterns: a supervisor with subagents (``supervisor.py``)."""
