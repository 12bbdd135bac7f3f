"""Queries on the early Twilio status callbacks (`early_callback`): those whose sid matched none
of our messages when they came, kept until it does (`inbound.settle_early`).

A callback is kept with the dialect's INSERT-or-ignore on (provider_id, status), so Twilio
calling twice leaves one row; every look-up by sid goes through that unique key's index.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, connection, dialect_of
from campaignctl.store.states import FAILED, SENT, UNCERTAIN


def keep(
    conn: Conn,
    *,
    channel: str,
    provider_id: str,
    status: str,
    resource: dict[str, Any],
    received_at: datetime,
) -> None:
    """Keep one callback; the same (sid, status) kept before stays as it was."""
    from campaignctl.store.tables import EARLY_CALLBACK

    row = {
        "channel": channel,
        "provider_id": provider_id,
        "status": status,
        "resource": resource,
        "received_at": received_at,
    }
    c = connection(conn)
    c.execute(dialect_of(c).insert_ignore(EARLY_CALLBACK), [row])


def kept_for(conn: Conn, provider_ids: Collection[str]) -> list[Any]:
    """(id, channel, provider_id, resource, received_at) of the callbacks kept for these sids,
    oldest first: one query through the unique key."""
    from sqlalchemy import select

    from campaignctl.store.tables import EARLY_CALLBACK

    if not provider_ids:
        return []
    k = EARLY_CALLBACK.c
    q = (
        select(k.id, k.channel, k.provider_id, k.resource, k.received_at)
        .where(k.provider_id.in_(list(provider_ids)))
        .order_by(k.received_at, k.id)
    )
    return list(connection(conn).execute(q))


def kept_ours(conn: Conn, channel: str | None = None) -> list[Any]:
    """The kept callbacks (as `kept_for`) whose sid is now one of our handed-over messages',
    optionally those that came on one channel."""
    from sqlalchemy import exists, select

    from campaignctl.store.tables import EARLY_CALLBACK, MESSAGE

    k, m = EARLY_CALLBACK.c, MESSAGE.c
    ours = exists().where(m.provider_id == k.provider_id, m.state.in_((SENT, UNCERTAIN, FAILED)))
    q = select(k.id, k.channel, k.provider_id, k.resource, k.received_at).where(ours)
    if channel is not None:
        q = q.where(k.channel == channel)
    return list(connection(conn).execute(q.order_by(k.received_at, k.id)))


def forget(conn: Conn, ids: Sequence[int]) -> None:
    """Delete these kept callbacks (settled)."""
    from sqlalchemy import delete

    from campaignctl.store.tables import EARLY_CALLBACK

    if ids:
        connection(conn).execute(delete(EARLY_CALLBACK).where(EARLY_CALLBACK.c.id.in_(list(ids))))


def forget_before(conn: Conn, before: datetime) -> int:
    """Delete the callbacks kept since before `before`; how many."""
    from sqlalchemy import delete

    from campaignctl.store.tables import EARLY_CALLBACK

    res = connection(conn).execute(
        delete(EARLY_CALLBACK).where(EARLY_CALLBACK.c.received_at < before)
    )
    return int(res.rowcount or 0)
