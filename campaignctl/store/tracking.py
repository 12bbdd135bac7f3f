"""Queries for tracked clicks and opens (`serve`'s `/c/` and `/o/` doors, docs/web.md).

A hit is an `event` row of kind `click` or `open`, with the message, its lead and channel, and
`detail` = {"machine": bool, "url": the link (clicks), "why": the reason (machine hits)}. Every
hit is recorded, repeated ones too; rates count messages with a hit whose `machine` is false.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, connection

CLICK = "click"
OPEN = "open"


def message_of(conn: Conn, message_id: int) -> Any | None:
    """(lead_id, channel, sent_at, claimed_at) of the message a link names, or None when it
    is gone (erased with its lead)."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    m = MESSAGE.c
    return (
        connection(conn)
        .execute(select(m.lead_id, m.channel, m.sent_at, m.claimed_at).where(m.id == message_id))
        .first()
    )


def clicks_since(conn: Conn, message_id: int, since: datetime) -> list[Any]:
    """(id, occurred_at, detail) of the message's clicks at or after `since`, oldest first
    (through `ix_event_message_kind`)."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT

    return list(
        connection(conn).execute(
            select(EVENT.c.id, EVENT.c.occurred_at, EVENT.c.detail)
            .where(
                EVENT.c.message_id == message_id,
                EVENT.c.kind == CLICK,
                EVENT.c.occurred_at >= since,
            )
            .order_by(EVENT.c.occurred_at, EVENT.c.id)
        )
    )


def add_hit(
    conn: Conn,
    kind: str,
    message_id: int,
    lead_id: int | None,
    channel: str | None,
    detail: dict[str, Any],
    at: datetime,
) -> None:
    """Record a click or an open of a message."""
    from campaignctl.store.tables import EVENT

    connection(conn).execute(
        EVENT.insert().values(
            kind=kind,
            message_id=message_id,
            lead_id=lead_id,
            channel=channel,
            detail=detail,
            occurred_at=at,
            recorded_at=at,
        )
    )


def flag_machine(conn: Conn, rows: Sequence[tuple[int, dict[str, Any]]], why: str) -> None:
    """Mark earlier hits (id, detail) as a machine's: a burst found later shows what they were."""
    from sqlalchemy import update

    from campaignctl.store.tables import EVENT

    c = connection(conn)
    for event_id, detail in rows:
        c.execute(
            update(EVENT)
            .where(EVENT.c.id == event_id)
            .values(detail={**detail, "machine": True, "why": why})
        )


def human(kind: str, until: datetime | None = None) -> Any:
    """An EXISTS over the current message's (`MESSAGE` in the outer query) hits of `kind` that
    were not a machine's, recorded up to `until`: what `click_rate` counts."""
    from sqlalchemy import and_, exists, false, select

    from campaignctl.store.tables import EVENT, MESSAGE

    cond = and_(
        EVENT.c.message_id == MESSAGE.c.id,
        EVENT.c.kind == kind,
        EVENT.c.detail["machine"].as_boolean() == false(),
    )
    if until is not None:
        cond = and_(cond, EVENT.c.occurred_at <= until)
    return exists(select(EVENT.c.id).where(cond))
