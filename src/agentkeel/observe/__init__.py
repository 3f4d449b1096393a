"""Observability: OpenTelemetry spans and metrics for runs, derived from their journals (live or after the fact)."""
