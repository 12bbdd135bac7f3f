"""Queries on leads, their enrolments and opt-outs, and `lead_context`.

A lead row here has the columns of `LEAD_COLUMNS`: `id`, the fixed fields of
`store.fields.LEAD_FIXED_FIELDS`, and `attrs`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from typing import Any, NamedTuple

from campaignctl.store.conn import Conn, Readable, connection
from campaignctl.store.fields import LEAD_FIXED_FIELDS
from campaignctl.store.reader import marks, reader

#: The names of the columns a lead row has, in order.
LEAD_COLUMNS = ("id", *LEAD_FIXED_FIELDS, "attrs")
#: Ids per `IN (...)` list.
CHUNK = 500


def _columns() -> list[Any]:
    """The `LEAD_COLUMNS` as columns of the lead table."""
    from campaignctl.store.tables import LEAD

    return [LEAD.c[k] for k in LEAD_COLUMNS]


def by_ids(conn: Conn, ids: Sequence[int]) -> Iterator[Any]:
    """The leads with these ids (missing ones left out), in chunks of `CHUNK` ids."""
    from sqlalchemy import select

    from campaignctl.store.tables import LEAD

    c = connection(conn)
    for i in range(0, len(ids), CHUNK):
        yield from c.execute(select(*_columns()).where(LEAD.c.id.in_(ids[i : i + CHUNK])))


def enrollable(conn: Conn, campaign: str, channels: Sequence[str]) -> Iterator[Any]:
    """Leads not enrolled in `campaign`, not opted out of any of `channels`, and not erased
    (`leads delete` leaves a lead with neither email nor phone)."""
    from sqlalchemy import or_, select

    from campaignctl.store.tables import ENROLMENT, LEAD, OPTOUT

    enrolled = select(ENROLMENT.c.lead_id).where(ENROLMENT.c.campaign == campaign)
    opted = select(OPTOUT.c.lead_id).where(OPTOUT.c.channel.in_(channels))
    yield from connection(conn).execute(
        select(*_columns()).where(
            LEAD.c.id.not_in(enrolled),
            LEAD.c.id.not_in(opted),
            or_(LEAD.c.email.is_not(None), LEAD.c.phone.is_not(None)),
        )
    )


def optouts_of(conn: Conn, ids: Sequence[int]) -> dict[int, set[str]]:
    """lead id -> the channels it opted out of (`*`: every channel)."""
    from sqlalchemy import select

    from campaignctl.store.tables import OPTOUT

    out: dict[int, set[str]] = defaultdict(set)
    for o in connection(conn).execute(
        select(OPTOUT.c.lead_id, OPTOUT.c.channel).where(OPTOUT.c.lead_id.in_(ids))
    ):
        out[o.lead_id].add(o.channel)
    return out


def all_optouts(conn: Readable) -> Iterator[Any]:
    """(lead_id, channel) of every opt-out, in the order they were recorded."""
    return reader(conn).stream("SELECT lead_id, channel FROM optout ORDER BY id")


def enrolment_states(conn: Conn, ids: Sequence[int]) -> dict[tuple[str, int], tuple[str, Any]]:
    """(campaign, lead id) -> (state, reason) of these leads' enrolments."""
    from sqlalchemy import select

    from campaignctl.store.tables import ENROLMENT

    return {
        (e.campaign, e.lead_id): (e.state, e.reason)
        for e in connection(conn).execute(
            select(
                ENROLMENT.c.campaign,
                ENROLMENT.c.lead_id,
                ENROLMENT.c.state,
                ENROLMENT.c.reason,
            ).where(ENROLMENT.c.lead_id.in_(ids))
        )
    }


def ended_enrolments(conn: Readable) -> set[tuple[str, int]]:
    """(campaign, lead id) of every enrolment that is no longer active."""
    rows = reader(conn).stream("SELECT campaign, lead_id FROM enrolment WHERE state != 'active'")
    return {(c, lid) for c, lid in rows}


def active_count(conn: Conn, campaign: str) -> int:
    """How many enrolments of `campaign` are active."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import ENROLMENT

    n: int = (
        connection(conn)
        .execute(
            select(func.count())
            .select_from(ENROLMENT)
            .where(ENROLMENT.c.campaign == campaign, ENROLMENT.c.state == "active")
        )
        .scalar_one()
    )
    return n


def count(conn: Readable) -> int:
    """How many leads there are (erased ones included)."""
    return int(reader(conn).value("SELECT count(*) FROM lead"))


def enrolment_counts(conn: Readable, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, state, count) of these campaigns' enrolments."""
    return list(
        reader(conn).rows(
            "SELECT campaign, state, count(*) FROM enrolment "
            f"WHERE campaign IN {marks(campaigns)} GROUP BY campaign, state",
            *campaigns,
        )
    )


def optout_counts(conn: Readable, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, channel, count) of enrolled leads opted out of each channel."""
    return list(
        reader(conn).rows(
            # from the opt-outs (fewer than the enrolments) through the enrolments' lead index:
            # SQLite keeps a CROSS JOIN's order
            "SELECT enrolment.campaign, optout.channel, count(*) FROM optout "
            "CROSS JOIN enrolment WHERE enrolment.lead_id = optout.lead_id "
            f"AND enrolment.campaign IN {marks(campaigns)} "
            "GROUP BY enrolment.campaign, optout.channel",
            *campaigns,
        )
    )


class LeadRow(NamedTuple):
    """A lead as `leads list` and `leads tag --where` read it: its columns, `tags` and `attrs`
    decoded."""

    id: int
    email: str | None
    phone: str | None
    first_name: str | None
    last_name: str | None
    timezone: str | None
    status: str
    tags: list[str]
    attrs: dict[str, Any]


def in_import_order(conn: Readable) -> Iterator[LeadRow]:
    """Every lead as a `LeadRow`, in import order, streamed from the cursor a batch at a time,
    never all held (`leads list` on a million leads): plain SQL, so `leads list` loads no
    SQLAlchemy on an up-to-date SQLite file. Read them inside the transaction."""
    from campaignctl.audience import loads
    from campaignctl.store.dialect import unenrolled_columns

    r = reader(conn)
    columns = unenrolled_columns(None, r.dialect.lead_read)
    for lead_id, email, phone, first, last, zone, status, tags, attrs in r.stream(
        f"SELECT {columns} FROM lead ORDER BY id"
    ):
        yield LeadRow(
            lead_id,
            email,
            phone,
            first,
            last,
            zone,
            status,
            loads(tags) if tags else [],
            loads(attrs) if attrs else {},
        )


@cache
def _builder() -> Callable[..., dict[str, Any]]:
    """audience.lead_context, loaded on first use (as before: importing this module loads no
    audience code)."""
    from campaignctl.audience import lead_context as build

    return build


def lead_context(lead: Any) -> dict[str, Any]:
    """The lead as templates and audience expressions see it (a Lead, or a row of its columns)."""
    return _builder()(
        id=lead.id,
        email=lead.email,
        phone=lead.phone,
        first_name=lead.first_name,
        last_name=lead.last_name,
        timezone=lead.timezone,
        status=lead.status,
        tags=lead.tags or [],
        attrs=lead.attrs or {},
    )


def plan_leads(conn: Readable) -> Iterator[Any]:
    """(id, email, phone, timezone) of every lead, as plain tuples (the planner's bulk read),
    streamed: read them inside the transaction."""
    return reader(conn).stream("SELECT id, email, phone, timezone FROM lead")


def plan_newcomers(
    conn: Readable, campaign: str, columns: frozenset[str] | None = None
) -> Iterator[Any]:
    """(id, email, phone, first_name, last_name, timezone, status, tags, attrs) of the leads not
    enrolled in `campaign`, as plain tuples: `tags` and `attrs` are JSON text. Of the last six,
    only those in `columns` are read (None: all), the others are None. Streamed: read them
    inside the transaction."""
    r = reader(conn)
    return r.dialect.unenrolled_lead_rows(r, campaign, columns)


def rows_after(conn: Readable, last_id: int, n: int) -> list[Any]:
    """Up to `n` leads with ids above `last_id`, by id, as plain rows (id, email, phone,
    first_name, last_name, timezone, status, tags, attrs; the JSON columns as their text, which
    `audience.row_context` decodes): without SQLAlchemy on an up-to-date SQLite file."""
    from campaignctl.store.dialect import unenrolled_columns

    r = reader(conn)
    return list(
        r.rows(
            f"SELECT {unenrolled_columns(None, r.dialect.lead_read)} FROM lead "
            "WHERE id > ? ORDER BY id LIMIT ?",
            last_id,
            n,
        )
    )


def by_address(conn: Conn, address: str) -> Any:
    """The whole row of the lead with this normalised address (a lower-case email, matched in
    any case, or an E.164 phone), or None: `events.lead_by_address` without the ORM."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import LEAD

    where = func.lower(LEAD.c.email) == address if "@" in address else LEAD.c.phone == address
    return connection(conn).execute(select(LEAD).where(where).limit(1)).first()


def id_by_address(conn: Readable, address: str) -> int | None:
    """The id of the lead with this normalised address (a lower-case email, matched in any
    case through `ix_lead_email_lower`, or an E.164 phone), or None. Plain SQL: `messages list
    --lead` loads no SQLAlchemy on an up-to-date SQLite file."""
    where = "lower(email) = ?" if "@" in address else "phone = ?"
    found = reader(conn).value(f"SELECT id FROM lead WHERE {where} LIMIT 1", address)
    return None if found is None else int(found)


def enrolments_of(conn: Conn, lead_id: int) -> list[Any]:
    """One lead's enrolments, whole rows."""
    from sqlalchemy import select

    from campaignctl.store.tables import ENROLMENT

    return list(
        connection(conn).execute(
            select(ENROLMENT).where(ENROLMENT.c.lead_id == lead_id).order_by(ENROLMENT.c.id)
        )
    )
