"""The real clock, for the command line's edges only: the core takes `now` as a parameter.

A leaf of its own, so that a command that only reads (`status`, `plan`) can tell the time
without importing the runner and its engine.
"""

from __future__ import annotations

from datetime import UTC, datetime


def wall_clock() -> datetime:
    """The real clock, aware, UTC."""
    return datetime.now(UTC)
