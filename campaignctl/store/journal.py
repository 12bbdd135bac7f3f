"""The journal: an append-only log of what campaignctl decided or did, written where it is decided.

A message row keeps only its latest state, so what it forgets is written here: each deferral (the
window closed in the lead's zone, a frequency cap, a backoff after an error), each time a channel
was held at its limit or by its breaker and released again, and a lead's imports and changes (file
and line, status and tags, with their source). Rows are never updated; `explain` reads them in
time order beside the message, enrolment and inbound `event` rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from campaignctl.store.conn import Conn, connection


class Kind(StrEnum):
    """What a journal row records; `code` and `detail` by kind."""

    #: A lead added by `leads import` (detail: file, line).
    LEAD_IMPORTED = "lead.imported"
    #: A lead's fields changed (source: import, leads set, sync; detail: the changed fields,
    #: and file and line for an import).
    LEAD_UPDATED = "lead.updated"
    #: A lead's status changed (detail: from, to). Campaigns can enrol on it.
    LEAD_STATUS = "lead.status"
    #: A tag added or removed (code: added | removed; detail: tag, and file and line for an
    #: import). Campaigns can enrol on it.
    LEAD_TAG = "lead.tag"
    #: A lead erased by `leads delete` (its fields are gone; this row stays).
    LEAD_ERASED = "lead.erased"
    #: A campaign's audience could not be evaluated on this lead (detail: error): not enrolled.
    AUDIENCE_ERROR = "audience.error"
    #: A `reenrol` sequence enrolled the lead again (detail: event, the journal row that did;
    #: its messages carry minus that id as `trigger_event`).
    REENROLLED = "enrolment.again"
    #: A message moved later (code: engine.decide.Why; detail: until, reason).
    DEFERRED = "message.deferred"
    #: A send failed transiently and will be retried (code: error code; detail: until, error).
    RETRY = "message.retry"
    #: A claimed message whose outcome is unknown (detail: reason).
    UNCERTAIN = "message.uncertain"
    #: An uncertain message settled by asking the provider (code: sent | pending | failed;
    #: detail: reason, provider_id, and `attachments`, how many files, when the claim had some).
    RECONCILED = "message.reconciled"
    #: A channel stopped claiming (code: limit | breaker; detail: until, reason).
    CHANNEL_HELD = "channel.held"
    #: A channel claims again after a hold.
    CHANNEL_RELEASED = "channel.released"
    #: A step's A/B test decided (campaign, step; code: the rule, `abtest`; detail: winner,
    #: metric, p_value, reason).
    AB_DECIDED = "ab.decided"


_COLUMNS = ("lead_id", "campaign", "step", "message_id", "channel", "code", "source")


def entry(
    kind: Kind, at: datetime, detail: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """One row to `add`: every column present, so rows of any kind batch together."""
    unknown = set(fields) - set(_COLUMNS)
    if unknown:
        raise TypeError(f"journal.entry: unknown fields {sorted(unknown)}")
    return {
        "at": at,
        "kind": str(kind),
        **{c: fields.get(c) for c in _COLUMNS},
        "detail": detail or {},
    }


def add(conn: Conn, entries: Sequence[dict[str, Any]]) -> None:
    """Append `entries` (from `entry`), in the caller's transaction."""
    from sqlalchemy import insert

    from campaignctl.store.tables import JOURNAL

    if entries:
        connection(conn).execute(insert(JOURNAL), list(entries))


def for_lead(conn: Conn, lead_id: int) -> list[Any]:
    """Every row about one lead, in time order."""
    from sqlalchemy import select

    from campaignctl.store.tables import JOURNAL

    return list(
        connection(conn).execute(
            select(JOURNAL).where(JOURNAL.c.lead_id == lead_id).order_by(JOURNAL.c.at, JOURNAL.c.id)
        )
    )


def channel_holds(conn: Conn, channels: Iterable[str], since: datetime | None = None) -> list[Any]:
    """The holds and releases of `channels` (after `since`), in time order."""
    from sqlalchemy import select

    from campaignctl.store.tables import JOURNAL

    q = select(JOURNAL).where(
        JOURNAL.c.lead_id.is_(None),
        JOURNAL.c.kind.in_([str(Kind.CHANNEL_HELD), str(Kind.CHANNEL_RELEASED)]),
        JOURNAL.c.channel.in_(list(channels)),
    )
    if since is not None:
        q = q.where(JOURNAL.c.at >= since)
    return list(connection(conn).execute(q.order_by(JOURNAL.c.at, JOURNAL.c.id)))


#: The kinds `lead_events` returns by default: what campaigns can enrol on, and the rest of a
#: lead's history.
LEAD_KINDS = (Kind.LEAD_IMPORTED, Kind.LEAD_UPDATED, Kind.LEAD_STATUS, Kind.LEAD_TAG)


def lead_events(
    conn: Conn,
    after_id: int = 0,
    kinds: Iterable[Kind | str] = LEAD_KINDS,
    limit: int | None = None,
) -> list[Any]:
    """The journal's lead rows of `kinds` with ids above `after_id`, by id: a reader that keeps
    the last id it saw (a trigger's cursor) gets each change once, in the order written."""
    from sqlalchemy import select

    from campaignctl.store.tables import JOURNAL

    q = (
        select(JOURNAL)
        .where(JOURNAL.c.id > after_id, JOURNAL.c.kind.in_([str(k) for k in kinds]))
        .order_by(JOURNAL.c.id)
    )
    if limit is not None:
        q = q.limit(limit)
    return list(connection(conn).execute(q))


def current_hold(conn: Conn, channel: str) -> str | None:
    """The code of `channel`'s hold as the journal last recorded it (limit, breaker), or None
    when it was released or never held: the state a claim compares a new hold with."""
    from sqlalchemy import select

    from campaignctl.store.tables import JOURNAL

    row = (
        connection(conn)
        .execute(
            select(JOURNAL.c.kind, JOURNAL.c.code)
            .where(
                JOURNAL.c.lead_id.is_(None),
                JOURNAL.c.channel == channel,
                JOURNAL.c.kind.in_([str(Kind.CHANNEL_HELD), str(Kind.CHANNEL_RELEASED)]),
            )
            .order_by(JOURNAL.c.at.desc(), JOURNAL.c.id.desc())
            .limit(1)
        )
        .first()
    )
    return None if row is None or row.kind == Kind.CHANNEL_RELEASED else str(row.code)
