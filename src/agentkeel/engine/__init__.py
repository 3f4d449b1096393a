"""The engine: drives runs by performing the core's decisions and journaling their outcomes."""
