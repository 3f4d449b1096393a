"""`keel stats`."""

from __future__ import annotations
