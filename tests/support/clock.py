"""The tests' clock: a fixed start, spans of days, and time travel for `send` on the wall clock.

The engine, the planner and pacing take `now` as a parameter; tests pass `T0 + days(n)`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlmodel import select

from campaignctl.store import Message
from tests.support.leads import open_store

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Manila


def days(n: float) -> timedelta:
    return timedelta(days=n)


def utc(t: datetime | None) -> datetime:
    """A stored time as an aware UTC datetime (SQLite hands them back naive)."""
    assert t is not None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def travel(folder: Path, by: timedelta) -> None:
    """Let `by` pass for the pending messages: their due times move that much earlier.

    `send` runs on the wall clock; moving what waits into the past is the same as waiting.
    """
    store = open_store(folder)
    try:
        with store.write() as s:
            for m in s.exec(select(Message).where(Message.state == "pending")):
                m.due_at = m.due_at - by
                s.add(m)
    finally:
        store.close()
