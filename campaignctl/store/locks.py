"""Locks held in the database for the length of one write transaction, by name.

What must happen once across every process (a blast's enrolment, recovering a dead worker's
claims) or must be counted and reserved together (a channel's limits and its circuit breaker)
takes its lock first, then reads. On PostgreSQL each is a transaction-scoped advisory lock
(`pg_advisory_xact_lock`) on a 64-bit hash of its name: released at commit or rollback, and
when the connection dies with its process, so a killed daemon never leaves one behind. On
SQLite a write transaction already holds the whole database (`BEGIN IMMEDIATE`), so taking one
costs nothing. docs/scaling.md says why an advisory lock rather than a row lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from campaignctl.store.conn import Conn, connection, dialect_of


def key_of(name: str) -> int:
    """The signed 64-bit key of a lock name (the first 8 bytes of its BLAKE2b hash): stable
    across processes, hosts and versions (Python's `hash` is not). Two names sharing a key
    only wait for each other."""
    digest = hashlib.blake2b(f"campaignctl:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def hold(conn: Conn, names: Iterable[str]) -> None:
    """Take these locks, in one order every process follows (by key), so two transactions
    taking several never wait on each other in a circle."""
    c = connection(conn)
    dialect = dialect_of(c)
    for key in sorted({key_of(n) for n in names}):
        dialect.lock(c, key)


def channel(name: str) -> str:
    """The lock of a channel's limits, pacing and circuit breaker."""
    return f"channel:{name}"


def enrolment(campaign: str) -> str:
    """The lock of a campaign's enrolment (a blast's runs once; a sequence's never twice at
    once, or two processes would add the same leads)."""
    return f"enrol:{campaign}"


def completion(campaign: str) -> str:
    """The lock of recording a blast completed."""
    return f"complete:{campaign}"


def sync(channel: str) -> str:
    """The lock of recording a channel's inbound messages and moving its cursor."""
    return f"sync:{channel}"


#: The lock of the frequency cap (`settings.max_per_lead`): a lead's sends on every channel.
FREQUENCY_CAP = "frequency-cap"
#: The lock of marking dead workers' claims uncertain (journalled once).
RECOVERY = "recover"
#: The lock of the early Twilio callbacks (`inbound.settle_early`): a callback whose sid is not
#: ours yet is kept under it, and a record step looks for kept ones under it, so that of two
#: transactions at once one always sees what the other wrote (its sid, or the kept callback).
EARLY_CALLBACKS = "early-callbacks"
