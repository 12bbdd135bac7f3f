"""The message states and the store's clock: plain names every module can import without
loading SQLAlchemy (a command that only reads never does; tests/test_startup.py holds it)."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """The wall clock, aware and in UTC. Core code takes `now` as a parameter instead."""
    return datetime.now(UTC)


# Message states. `sending` is claimed and handed to a provider; `uncertain` is a `sending` whose
# process died, waiting for the channel to say whether it went out.
PENDING, SENDING, SENT, FAILED, SKIPPED, UNCERTAIN = (
    "pending",
    "sending",
    "sent",
    "failed",
    "skipped",
    "uncertain",
)
MESSAGE_STATES = (PENDING, SENDING, SENT, FAILED, SKIPPED, UNCERTAIN)
