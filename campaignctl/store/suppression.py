"""Queries on the suppression list (keyed hashes of do-not-contact addresses) and the erasure of
one lead's personal data. The hashing and the rule are `campaignctl.suppression`'s."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, Readable, connection, dialect_of
from campaignctl.store.leads import CHUNK
from campaignctl.store.reader import marks, reader
from campaignctl.store.states import PENDING, SKIPPED

#: Every channel.
ALL_CHANNELS = "*"


def channels_of(conn: Readable, hashes: Iterable[str]) -> dict[str, set[str]]:
    """hash -> the channels (`*`: every channel) it is suppressed on, for these hashes."""
    wanted = list(dict.fromkeys(hashes))
    out: dict[str, set[str]] = defaultdict(set)
    r = reader(conn)
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        for h, ch in r.rows(
            f"SELECT hash, channel FROM suppression WHERE hash IN {marks(chunk)}", *chunk
        ):
            out[h].add(ch)
    return dict(out)


def everything(conn: Readable) -> dict[str, set[str]]:
    """hash -> channels of the whole list (the planner's bulk read)."""
    out: dict[str, set[str]] = defaultdict(set)
    for h, ch in reader(conn).stream("SELECT hash, channel FROM suppression"):
        out[h].add(ch)
    return dict(out)


def add(conn: Conn, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows (hash, channel, source, note, created_at); an existing (hash, channel) stays."""
    from campaignctl.store.tables import SUPPRESSION

    if rows:
        connection(conn).execute(dialect_of(conn).insert_ignore(SUPPRESSION), list(rows))


def listing(conn: Conn) -> list[Any]:
    """Every row, oldest first."""
    from sqlalchemy import select

    from campaignctl.store.tables import SUPPRESSION

    q = select(SUPPRESSION).order_by(SUPPRESSION.c.created_at, SUPPRESSION.c.id)
    return list(connection(conn).execute(q))


def remove(conn: Conn, hash_: str, channel: str | None) -> int:
    """Delete the hash's rows (on one channel, or all of them); returns how many."""
    from sqlalchemy import delete

    from campaignctl.store.tables import SUPPRESSION

    q = delete(SUPPRESSION).where(SUPPRESSION.c.hash == hash_)
    if channel is not None:
        q = q.where(SUPPRESSION.c.channel == channel)
    return int(connection(conn).execute(q).rowcount or 0)


# ---------------------------------------------------------------- erasure


def unlinked_events(conn: Conn) -> list[Any]:
    """(id, detail) of the inbound events matched to no lead: erasure looks for its addresses."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT

    q = select(EVENT.c.id, EVENT.c.detail).where(EVENT.c.lead_id.is_(None))
    return list(connection(conn).execute(q))


def erase_lead(
    conn: Conn,
    lead_id: int,
    now: datetime,
    *,
    skip_reason: str,
    skip_code: str,
    event_details: dict[int, dict[str, Any]],
) -> dict[str, int]:
    """Clear one lead's personal data, keeping every row that reports count.

    The lead row stays (its id holds the history together) with no name, address, time zone,
    tags or attributes; its messages keep their state and timestamps but lose recipient,
    subject, body, error text and attachment paths (rendered per lead); its opt-outs lose
    their detail, and its journalled tag changes their tag; each event in `event_details`
    (id -> what its detail keeps) is rewritten.
    Pending messages are skipped (`skip_reason`, `skip_code`) and active enrolments stopped
    ("erased"). Returns counts.
    """
    from sqlalchemy import update

    from campaignctl.store.tables import ENROLMENT, EVENT, JOURNAL, LEAD, MESSAGE, OPTOUT

    c = connection(conn)
    c.execute(
        update(LEAD)
        .where(LEAD.c.id == lead_id)
        .values(
            email=None,
            phone=None,
            first_name=None,
            last_name=None,
            timezone=None,
            tags=[],
            attrs={},
            updated_at=now,
        )
    )
    skipped = c.execute(
        update(MESSAGE)
        .where(MESSAGE.c.lead_id == lead_id, MESSAGE.c.state == PENDING)
        .values(state=SKIPPED, reason=skip_reason, reason_code=skip_code, updated_at=now)
    ).rowcount
    messages = c.execute(
        update(MESSAGE)
        .where(MESSAGE.c.lead_id == lead_id)
        .values(recipient=None, subject=None, body=None, error=None, attachments=None)
    ).rowcount
    stopped = c.execute(
        update(ENROLMENT)
        .where(ENROLMENT.c.lead_id == lead_id, ENROLMENT.c.state == "active")
        .values(state="stopped", reason="erased", updated_at=now)
    ).rowcount
    c.execute(update(OPTOUT).where(OPTOUT.c.lead_id == lead_id).values(detail=None))
    # a tag can say something about the person (`divorced`, a family name): the lead's tag
    # changes keep whether one was added or removed, not which
    c.execute(
        update(JOURNAL)
        .where(JOURNAL.c.lead_id == lead_id, JOURNAL.c.kind == "lead.tag")
        .values(detail={})
    )
    for event_id, detail in event_details.items():
        c.execute(update(EVENT).where(EVENT.c.id == event_id).values(detail=detail))
    return {
        "messages": int(messages or 0),
        "skipped": int(skipped or 0),
        "stopped": int(stopped or 0),
        "events": len(event_details),
    }


def events_of(conn: Conn, lead_id: int) -> list[Any]:
    """(id, detail) of the events about a lead: its own, and those on its messages."""
    from sqlalchemy import or_, select

    from campaignctl.store.tables import EVENT, MESSAGE

    mine = select(MESSAGE.c.id).where(MESSAGE.c.lead_id == lead_id)
    q = select(EVENT.c.id, EVENT.c.detail).where(
        or_(EVENT.c.lead_id == lead_id, EVENT.c.message_id.in_(mine))
    )
    return list(connection(conn).execute(q))
