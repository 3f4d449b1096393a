"""Observability: OpenTelemetry spans and metrics for runs, derived from their journals (live or after the fact),
and the figures of ``keel stats``.

``configure`` chooses where live spans go (by default: the application's global provider, or the standard
``OTEL_*`` variables; see ``setup.py``).
"""

from agentkeel.observe.setup import configure

__all__ = ["configure"]
