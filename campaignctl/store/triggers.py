"""Trigger events (`campaignctl trigger`): one row per (campaign, event id), the guard that
makes an event enrol its matches once, even from two processes at once (the row is inserted in
the write transaction that enrols them; a second insert of the same id is ignored)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, connection, dialect_of


def record(
    conn: Conn, campaign: str, event_id: str, data: dict[str, Any], now: datetime
) -> int | None:
    """Record the event; its row id, or None when this campaign already had this event id."""
    from campaignctl.store.tables import TRIGGER_EVENT

    c = connection(conn)
    # RETURNING says whether the row went in on every database (PostgreSQL's rowcount is -1
    # once SQLAlchemy asks for the new key)
    row = c.execute(
        dialect_of(c).insert_ignore(TRIGGER_EVENT).returning(TRIGGER_EVENT.c.id),
        {"campaign": campaign, "event_id": event_id, "data": data, "received_at": now},
    ).first()
    return None if row is None else int(row[0])


def recorded(conn: Conn, campaign: str, event_id: str) -> Any | None:
    """The event's row (id, received_at, enrolled), or None when it was never received."""
    from sqlalchemy import select

    from campaignctl.store.tables import TRIGGER_EVENT

    return (
        connection(conn)
        .execute(
            select(TRIGGER_EVENT.c.id, TRIGGER_EVENT.c.received_at, TRIGGER_EVENT.c.enrolled).where(
                TRIGGER_EVENT.c.campaign == campaign, TRIGGER_EVENT.c.event_id == event_id
            )
        )
        .first()
    )


def set_enrolled(conn: Conn, row_id: int, count: int) -> None:
    from sqlalchemy import update

    from campaignctl.store.tables import TRIGGER_EVENT

    connection(conn).execute(
        update(TRIGGER_EVENT).where(TRIGGER_EVENT.c.id == row_id).values(enrolled=count)
    )


def data_of(conn: Conn, row_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Each event's data (what templates see as `item`), by row id."""
    from sqlalchemy import select

    from campaignctl.store.tables import TRIGGER_EVENT

    ids = sorted({i for i in row_ids if i})
    if not ids:
        return {}
    rows = connection(conn).execute(
        select(TRIGGER_EVENT.c.id, TRIGGER_EVENT.c.data).where(TRIGGER_EVENT.c.id.in_(ids))
    )
    return {r.id: r.data for r in rows}
