"""Changes to stored leads by hand: `leads set` (one lead) and `leads tag` (many).

The import's own updates go through the raw sqlite3 fast path (`store.sqlite.LeadInserts`).
Callers write the matching journal rows (`store.journal`) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from campaignctl.store.conn import Conn, connection


def address_owner(conn: Conn, column: str, value: str) -> int | None:
    """The id of the lead whose `email` or `phone` is `value` (None: nobody's)."""
    from sqlalchemy import select

    from campaignctl.store.tables import LEAD

    if column not in ("email", "phone"):
        raise ValueError(f"address_owner: {column!r} is not an address column")
    found = connection(conn).execute(select(LEAD.c.id).where(LEAD.c[column] == value)).first()
    return None if found is None else int(found[0])


def set_values(conn: Conn, lead_id: int, values: dict[str, Any], now: datetime) -> None:
    """Set columns of one lead (`updated_at` too)."""
    from sqlalchemy import update

    from campaignctl.store.tables import LEAD

    connection(conn).execute(
        update(LEAD).where(LEAD.c.id == lead_id).values(**values, updated_at=now)
    )


def set_tags(conn: Conn, changes: Sequence[tuple[int, list[str]]], now: datetime) -> None:
    """Set the tags of many leads: (lead id, tags) pairs, in one executemany."""
    from sqlalchemy import bindparam, update

    from campaignctl.store.tables import LEAD

    if not changes:
        return
    stmt = (
        update(LEAD)
        .where(LEAD.c.id == bindparam("lead_id"))
        .values(tags=bindparam("new_tags"), updated_at=now)
    )
    connection(conn).execute(
        stmt, [{"lead_id": lead_id, "new_tags": tags} for lead_id, tags in changes]
    )
