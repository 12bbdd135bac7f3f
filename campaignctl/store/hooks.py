"""Queries on the outgoing hooks' queue (`hook_delivery`) and the events it announces.

Rows are queued with the dialect's INSERT-or-ignore on (hook, idem_key), so queuing the same
fact twice (two processes, a pass run again after a crash) leaves one row. A row is leased
before its POST (`lease_until`), so two daemons never post the same row at once, and a daemon
that died mid-POST leaves a lease that expires: the row is posted again (at least once).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, Readable, connection, dialect_of
from campaignctl.store.reader import reader


def queue(conn: Conn, rows: Sequence[dict[str, Any]]) -> None:
    """Queue deliveries (columns as in `HookDelivery`); one already queued is kept."""
    from campaignctl.store.tables import HOOK_DELIVERY as D

    if rows:
        c = connection(conn)
        c.execute(dialect_of(c).insert_ignore(D), list(rows))


def unhooked_events(conn: Conn, limit: int) -> list[Any]:
    """The oldest events not yet looked at by the hooks (id, lead_id, message_id, channel,
    kind, detail, occurred_at, recorded_at)."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT

    e = EVENT.c
    return list(
        connection(conn).execute(
            select(
                e.id,
                e.lead_id,
                e.message_id,
                e.channel,
                e.kind,
                e.detail,
                e.occurred_at,
                e.recorded_at,
            )
            .where(e.hooked == 0)
            .order_by(e.id)
            .limit(limit)
        )
    )


def mark_hooked(conn: Conn, ids: Iterable[int] | None = None) -> int:
    """Mark these events (every event, when None) as looked at; how many were."""
    from sqlalchemy import update

    from campaignctl.store.tables import EVENT

    stmt = update(EVENT).where(EVENT.c.hooked == 0)
    if ids is not None:
        ids = list(ids)
        if not ids:
            return 0
        stmt = stmt.where(EVENT.c.id.in_(ids))
    return connection(conn).execute(stmt.values(hooked=1)).rowcount or 0


def due(conn: Conn, hooks: Sequence[str], now: datetime, limit: int) -> list[Any]:
    """Rows to post now: for each (hook, lead), only its oldest undelivered row (in order per
    lead: a later event waits for an earlier one), and only when due and not leased."""
    from sqlalchemy import or_, select

    from campaignctl.store.tables import HOOK_DELIVERY as D

    if not hooks:
        return []
    earlier = D.alias("earlier")
    blocked = (
        select(earlier.c.id)
        .where(
            earlier.c.hook == D.c.hook,
            earlier.c.lead_id == D.c.lead_id,
            earlier.c.delivered_at.is_(None),
            earlier.c.id < D.c.id,
        )
        .exists()
    )
    return list(
        connection(conn).execute(
            select(D)
            .where(
                D.c.hook.in_(hooks),
                D.c.delivered_at.is_(None),
                D.c.next_at <= now,
                or_(D.c.lease_until.is_(None), D.c.lease_until < now),
                ~blocked,
            )
            .order_by(D.c.id)
            .limit(limit)
        )
    )


def lease(conn: Conn, row_id: int, now: datetime, until: datetime) -> bool:
    """Take the row for one POST until `until`, unless another process holds it; whether
    this one did."""
    from sqlalchemy import or_, update

    from campaignctl.store.tables import HOOK_DELIVERY as D

    res = connection(conn).execute(
        update(D)
        .where(
            D.c.id == row_id,
            D.c.delivered_at.is_(None),
            or_(D.c.lease_until.is_(None), D.c.lease_until < now),
        )
        .values(lease_until=until)
    )
    return bool(res.rowcount)


def delivered(conn: Conn, row_id: int, now: datetime) -> None:
    from sqlalchemy import update

    from campaignctl.store.tables import HOOK_DELIVERY as D

    connection(conn).execute(
        update(D)
        .where(D.c.id == row_id)
        .values(delivered_at=now, lease_until=None, attempts=D.c.attempts + 1, last_error=None)
    )


def failed(conn: Conn, row_id: int, next_at: datetime, error: str) -> None:
    from sqlalchemy import update

    from campaignctl.store.tables import HOOK_DELIVERY as D

    connection(conn).execute(
        update(D)
        .where(D.c.id == row_id)
        .values(next_at=next_at, lease_until=None, attempts=D.c.attempts + 1, last_error=error)
    )


def body_rows(conn: Conn, row: Any) -> tuple[Any, Any | None, Any | None]:
    """(the lead, the message or None, the event or None) a queued row is about, as they
    are now."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT, LEAD, MESSAGE

    c = connection(conn)
    lead = c.execute(
        select(LEAD.c.id, LEAD.c.email, LEAD.c.phone, LEAD.c.first_name, LEAD.c.last_name).where(
            LEAD.c.id == row.lead_id
        )
    ).first()
    message = None
    if row.message_id is not None:
        m = MESSAGE.c
        message = c.execute(
            select(m.id, m.campaign, m.step, m.channel, m.variant, m.provider_id, m.sent_at).where(
                m.id == row.message_id
            )
        ).first()
    event = None
    if row.event_id is not None:
        event = c.execute(
            select(EVENT.c.kind, EVENT.c.channel, EVENT.c.detail).where(EVENT.c.id == row.event_id)
        ).first()
    return lead, message, event


def backlog(conn: Readable) -> list[Any]:
    """Per hook: undelivered rows, the oldest one's time, the most attempts, the earliest
    error still waiting."""
    r = reader(conn)
    rows = list(
        r.rows(
            "SELECT hook, count(*), min(occurred_at), max(attempts) FROM hook_delivery "
            "WHERE delivered_at IS NULL GROUP BY hook"
        )
    )
    out = []
    for hook, pending, oldest, attempts in rows:
        err = r.value(
            "SELECT last_error FROM hook_delivery WHERE delivered_at IS NULL AND hook = ? "
            "AND last_error IS NOT NULL ORDER BY id LIMIT 1",
            hook,
        )
        out.append((hook, pending, r.time_or_none(oldest), attempts, err))
    return out
