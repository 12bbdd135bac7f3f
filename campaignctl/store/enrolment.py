"""Set-based enrolment: the leads an audience picks, in SQL where it can be (`store.audience_sql`).

`pick` notes the candidates of one campaign in a scratch table (matching, or for Python to
decide); `settle` records Python's answers; `enrol_picked` enrols them with one INSERT ... SELECT
(and their first message too when its due time is the same for all); `add_messages` adds first
messages whose due time depends on the lead. All in the caller's write transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from campaignctl.audience import Cond
from campaignctl.store.audience_sql import verdict
from campaignctl.store.conn import Conn, connection, dialect_of
from campaignctl.store.journal import Kind
from campaignctl.store.leads import CHUNK


def pick(
    conn: Conn,
    campaign: str,
    channels: Sequence[str],
    cond: Cond,
    *,
    ids: Sequence[int] | None = None,
    stopped_only: bool = False,
) -> None:
    """Note the leads `campaign` may enrol (not enrolled, not opted out of `channels`, not
    erased: the rule of `store.leads.enrollable`) that `cond` matches or leaves to Python.
    `ids`: only these leads (an `enrol_on` event's); `stopped_only`: an active enrolment does
    not keep a lead out (a trigger campaign takes each event)."""
    c = connection(conn)
    d = dialect_of(c)
    sql, params = verdict(cond, d)
    d.pick_leads(
        c,
        campaign,
        list(channels),
        sql,
        params,
        ids=None if ids is None else list(ids),
        stopped_only=stopped_only,
    )


def unsure(conn: Conn, after: int = 0, limit: int = 5000) -> list[Any]:
    """Up to `limit` picked leads Python must decide, after lead `after`, by id: rows of (id,
    email, phone, first_name, last_name, timezone, status, tags, attrs), `tags` and `attrs`
    as JSON text (decoded by whoever reads them)."""
    c = connection(conn)
    return dialect_of(c).unsure_rows(c, after, limit)


def settle(conn: Conn, matched: Sequence[int], unmatched: Sequence[int] = ()) -> None:
    """Record Python's answers for the unsure picks."""
    c = connection(conn)
    verdicts = [(1, i) for i in matched] + [(0, i) for i in unmatched]
    if verdicts:
        dialect_of(c).settle_picks(c, verdicts)


def settle_rest(conn: Conn) -> None:
    """The unsure picks Python did not say match do not (one UPDATE for them all)."""
    c = connection(conn)
    dialect_of(c).settle_rest(c)


def picked(conn: Conn) -> list[Any]:
    """(id, timezone, phone) of the picked leads that match, by id."""
    c = connection(conn)
    return dialect_of(c).picked_rows(c)


def enrol_picked(
    conn: Conn, campaign: str, now: datetime, message: dict[str, Any] | None = None
) -> int:
    """Enrol the matching picks (and add `message`, its columns but `lead_id`, for each)."""
    c = connection(conn)
    return dialect_of(c).enrol_picked(c, campaign, now, message)


def enrol_picked_event(
    conn: Conn, campaign: str, now: datetime, message: dict[str, Any] | None = None
) -> int:
    """A trigger event's enrolment of the matching picks: their enrolment (an active one is
    kept) and `message` (with its `trigger_event`) for each; returns how many matched."""
    c = connection(conn)
    return dialect_of(c).enrol_picked_event(c, campaign, now, message)


def add_messages(conn: Conn, messages: list[dict[str, Any]]) -> None:
    """Insert first messages (one already there is kept)."""
    from campaignctl.store.tables import MESSAGE

    if messages:
        c = connection(conn)
        c.execute(dialect_of(c).insert_ignore(MESSAGE), messages)


def picked_timezones(conn: Conn) -> list[str]:
    """The distinct time zone names (not NULL) of the matching picks."""
    c = connection(conn)
    return dialect_of(c).picked_timezones(c)


def picked_outside(conn: Conn, timezones: list[str], batch: int = 5000) -> Iterator[list[Any]]:
    """(id, timezone, phone) of the matching picks whose timezone is NULL or not one of
    `timezones`, by id, a batch at a time (memory stays flat whatever their number)."""
    c = connection(conn)
    d = dialect_of(c)
    after = 0
    while rows := d.picked_rows_outside(c, timezones, after, batch):
        yield rows
        after = rows[-1][0]


def note_dues(conn: Conn, dues: list[tuple[int, datetime]]) -> None:
    """Note (lead id, due time) for picks whose first message's due time is their own."""
    if dues:
        c = connection(conn)
        dialect_of(c).note_picked_dues(c, dues)


def add_picked_messages(conn: Conn, message: dict[str, Any], dues: dict[str, datetime]) -> None:
    """`message` (its columns but `lead_id` and `due_at`) for each matching pick, with one
    INSERT ... SELECT: due at `dues[its timezone]`, else at what `note_dues` noted for it."""
    c = connection(conn)
    dialect_of(c).insert_picked_messages_due(c, message, dues)


def audience_errors_logged(conn: Conn, campaign: str, lead_ids: Sequence[int]) -> set[int]:
    """Which of these leads already have an `audience.error` journal row for `campaign`."""
    from sqlalchemy import select

    from campaignctl.store.tables import JOURNAL

    c = connection(conn)
    out: set[int] = set()
    ids = list(lead_ids)
    for i in range(0, len(ids), CHUNK):
        out.update(
            r[0]
            for r in c.execute(
                select(JOURNAL.c.lead_id).where(
                    JOURNAL.c.lead_id.in_(ids[i : i + CHUNK]),
                    JOURNAL.c.kind == str(Kind.AUDIENCE_ERROR),
                    JOURNAL.c.campaign == campaign,
                )
            )
        )
    return out


def verdicts(conn: Conn, cond: Cond) -> dict[int, int | None]:
    """lead id -> the SQL verdict of `cond` (1, 0, or None: Python decides), for every lead."""
    from sqlalchemy import text

    c = connection(conn)
    sql, params = verdict(cond, dialect_of(c))
    return {r[0]: r[1] for r in c.execute(text(f"SELECT lead.id, {sql} FROM lead"), params)}


def ended_of(conn: Conn, campaign: str, lead_ids: Sequence[int]) -> dict[int, datetime]:
    """lead id -> when its enrolment in `campaign` ended (completed or stopped), for those of
    these leads whose enrolment ended."""
    from sqlalchemy import select

    from campaignctl.store.tables import ENROLMENT

    c = connection(conn)
    out: dict[int, datetime] = {}
    for i in range(0, len(lead_ids), CHUNK):
        rows = c.execute(
            select(ENROLMENT.c.lead_id, ENROLMENT.c.updated_at).where(
                ENROLMENT.c.campaign == campaign,
                ENROLMENT.c.lead_id.in_(lead_ids[i : i + CHUNK]),
                ENROLMENT.c.state != "active",
            )
        )
        out.update((r.lead_id, r.updated_at) for r in rows)
    return out


def reactivate(conn: Conn, campaign: str, lead_ids: Sequence[int], now: datetime) -> None:
    """Enrol these leads in `campaign` again (`reenrol`): their ended enrolment is active anew.
    `enrolled_at` keeps the first enrolment; the journal records each later one."""
    from sqlalchemy import update

    from campaignctl.store.tables import ENROLMENT

    c = connection(conn)
    for i in range(0, len(lead_ids), CHUNK):
        c.execute(
            update(ENROLMENT)
            .where(
                ENROLMENT.c.campaign == campaign,
                ENROLMENT.c.lead_id.in_(lead_ids[i : i + CHUNK]),
                ENROLMENT.c.state != "active",
            )
            .values(state="active", reason=None, updated_at=now)
        )
