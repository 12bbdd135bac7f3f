"""Queries for what comes back: inbound events, opt-outs, opt-ins, stopped sequences, and the
sent messages replies are matched against. All run in the caller's session (one transaction per
sync batch, per send batch or per `leads optout`); `campaignctl.suppression` groups the writes."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from campaignctl.store.conn import Conn, Readable, connection
from campaignctl.store.reader import marks, reader
from campaignctl.store.states import FAILED, PENDING, SENT, SKIPPED, UNCERTAIN

if TYPE_CHECKING:
    from sqlmodel import Session

    from campaignctl.store.schema import Enrolment, Lead, Message

# The functions on whole rows load SQLModel (and SQLAlchemy's ORM) when called: `status` reads
# `delivery_counts` without them.

#: An opt-out of every channel.
ALL_CHANNELS = "*"
#: Event kinds that say what became of a sent message: delivered (`read` when the provider's
#: status said so), or not delivered (undelivered, failed, bounced).
DELIVERY_KINDS = ("delivered", "undelivered", "failed", "bounce")
#: How far along each delivery status is: a message's status only moves forward (a late
#: "delivered" never overwrites "read"); not delivered is final. A delivered event whose
#: provider status was `read` ranks as read.
DELIVERY_RANK = {"delivered": 1, "read": 2, "undelivered": 3, "failed": 3, "bounce": 3}


def delivery_rank(kind: str, detail: Mapping[str, Any] | None) -> int:
    """The rank (DELIVERY_RANK) of a delivery event; 0 for any other kind."""
    if kind == "delivered" and (detail or {}).get("status") == "read":
        return DELIVERY_RANK["read"]
    return DELIVERY_RANK.get(kind, 0)


def delivery_rank_of(session: Session, message_id: int) -> int:
    """The rank of the message's furthest delivery event so far (0: none)."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT

    rows = session.connection().execute(
        select(EVENT.c.kind, EVENT.c.detail).where(
            EVENT.c.message_id == message_id, EVENT.c.kind.in_(DELIVERY_KINDS)
        )
    )
    return max((delivery_rank(kind, detail) for kind, detail in rows), default=0)


def handed_over(session: Session, channel: str | None = None) -> Iterator[Message]:
    """Every message handed (or maybe handed) to a provider, optionally on one channel, oldest
    first (so a thread id maps to the thread's first message)."""
    from sqlmodel import col, select

    from campaignctl.store.schema import Message

    q = select(Message).where(col(Message.state).in_((SENT, UNCERTAIN, FAILED)))
    if channel is not None:
        q = q.where(Message.channel == channel)
    yield from session.exec(q.order_by(col(Message.sent_at), col(Message.id)))


def handed_over_by_provider_id(session: Session, provider_ids: Collection[str]) -> list[Any]:
    """(id, lead_id, channel, sent_at, provider_id) of the handed-over messages with these
    provider ids (a Twilio sid): one webhook's look-up, through `ix_message_provider_id`."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    if not provider_ids:
        return []
    m = MESSAGE.c
    q = (
        select(m.id, m.lead_id, m.channel, m.sent_at, m.provider_id)
        .where(m.provider_id.in_(list(provider_ids)), m.state.in_((SENT, UNCERTAIN, FAILED)))
        .order_by(m.sent_at, m.id)
    )
    return list(session.connection().execute(q))


def lead_by_email(session: Session, email: str) -> Lead | None:
    """The lead with this email, in any case (`email` given in lower case)."""
    from sqlmodel import func, select

    from campaignctl.store.schema import Lead

    return session.exec(select(Lead).where(func.lower(Lead.email) == email)).first()


def lead_by_phone(session: Session, phone: str) -> Lead | None:
    """The lead with this E.164 phone."""
    from sqlmodel import select

    from campaignctl.store.schema import Lead

    return session.exec(select(Lead).where(Lead.phone == phone)).first()


def lead_by_address(session: Session, address: str) -> Lead | None:
    """The lead with this normalised address: a lower-case email or an E.164 phone."""
    if "@" in address:
        return lead_by_email(session, address)
    return lead_by_phone(session, address)


def lead_id_by_address(session: Session, address: str) -> int | None:
    """The id of the lead with this normalised address (a lower-case email or an E.164
    phone), read by its index alone."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import LEAD

    lead = LEAD.c
    where = func.lower(lead.email) == address if "@" in address else lead.phone == address
    row = session.connection().execute(select(lead.id).where(where).limit(1)).first()
    return None if row is None else int(row[0])


def seen(session: Session, source_id: str | None) -> bool:
    """Whether an event with this provider id is recorded already."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT

    q = select(EVENT.c.id).where(EVENT.c.source_id == source_id).limit(1)
    return session.connection().execute(q).first() is not None


def add_event(session: Session, **values: Any) -> None:
    """Record an event, written at once (a Core insert: a webhook's request path is this), so
    the unique source_id also holds within a batch."""
    from campaignctl.store.tables import EVENT

    values.setdefault("detail", {})
    session.connection().execute(EVENT.insert().values(**values))


def mark_message_error(
    session: Session, message_id: int, code: str, error: str | None, now: datetime
) -> None:
    """Note a permanent delivery error on a sent message (its state stays `sent`)."""
    from campaignctl.store.schema import Message

    msg = session.get(Message, message_id)
    if msg is None:
        return
    msg.error_code = code
    msg.error = error
    msg.updated_at = now
    session.add(msg)


def add_optout(
    session: Session, lead_id: int, channel: str, source: str, detail: str | None, now: datetime
) -> None:
    """Add the opt-out unless the lead already has it on that channel."""
    from sqlmodel import select

    from campaignctl.store.schema import OptOut

    existing = session.exec(
        select(OptOut).where(OptOut.lead_id == lead_id, OptOut.channel == channel)
    ).first()
    if existing is None:
        session.add(
            OptOut(lead_id=lead_id, channel=channel, source=source, detail=detail, created_at=now)
        )


def remove_optout(session: Session, lead_id: int, channel: str) -> None:
    from sqlmodel import col, delete

    from campaignctl.store.schema import OptOut

    session.exec(
        delete(OptOut).where(col(OptOut.lead_id) == lead_id, col(OptOut.channel) == channel)
    )


def optout_channels(session: Session, lead_id: int, channels: Sequence[str]) -> list[str]:
    """Which of `channels` the lead is opted out of."""
    from sqlmodel import col, select

    from campaignctl.store.schema import OptOut

    return list(
        session.exec(
            select(OptOut.channel).where(
                OptOut.lead_id == lead_id, col(OptOut.channel).in_(channels)
            )
        ).all()
    )


def optout_sources(session: Session, lead_id: int, channels: Sequence[str]) -> dict[str, str]:
    """channel -> who said so (`OptOut.source`), for those of `channels` the lead is opted out
    of."""
    from sqlalchemy import select

    from campaignctl.store.tables import OPTOUT

    o = OPTOUT.c
    rows = session.connection().execute(
        select(o.channel, o.source).where(o.lead_id == lead_id, o.channel.in_(list(channels)))
    )
    return {str(ch): str(src) for ch, src in rows}


def optout_of(session: Session, lead_id: int, channel: str) -> tuple[str, datetime] | None:
    """(source, created_at) of the lead's opt-out of `channel` (that channel only, not `*`),
    or None: the created_at names the row (the unsubscribe page's undo token carries it)."""
    from sqlalchemy import select

    from campaignctl.store.tables import OPTOUT

    o = OPTOUT.c
    row = (
        session.connection()
        .execute(select(o.source, o.created_at).where(o.lead_id == lead_id, o.channel == channel))
        .first()
    )
    return None if row is None else (str(row[0]), row[1])


def skip_pending(
    session: Session,
    lead_id: int,
    reason: str,
    now: datetime,
    *,
    channel: str = ALL_CHANNELS,
    campaigns: Collection[str] | None = None,
) -> int:
    """Skip the lead's pending messages (on `channel`, of `campaigns`); returns how many.

    The lead's messages are read by `ix_message_lead_id` alone and updated by id: with the
    state in the WHERE, SQLite's planner reads `ix_message_state_due` instead, every pending
    message of every lead (a reply cost milliseconds per 10,000 pending). The caller's write
    transaction holds the lock, so the states read are the states updated."""
    from sqlalchemy import select
    from sqlmodel import col, update

    from campaignctl.store.schema import Message
    from campaignctl.store.tables import MESSAGE

    m = MESSAGE.c
    mine = session.connection().execute(
        select(m.id, m.state, m.channel, m.campaign).where(m.lead_id == lead_id)
    )
    ids = [
        i
        for i, state, ch, campaign in mine
        if state == PENDING
        and (channel == ALL_CHANNELS or ch == channel)
        and (campaigns is None or campaign in campaigns)
    ]
    if not ids:
        return 0
    result = session.exec(
        update(Message)
        .where(col(Message.id).in_(ids), col(Message.state) == PENDING)
        .values(state=SKIPPED, reason=reason, reason_code=None, updated_at=now)
    )
    return int(result.rowcount or 0)


def active_enrolments(session: Session, lead_id: int) -> list[Enrolment]:
    from sqlmodel import select

    from campaignctl.store.schema import Enrolment

    return list(
        session.exec(
            select(Enrolment).where(Enrolment.lead_id == lead_id, Enrolment.state == "active")
        ).all()
    )


def end_enrolment(session: Session, e: Enrolment, state: str, reason: str, now: datetime) -> None:
    e.state, e.reason, e.updated_at = state, reason, now
    session.add(e)


def of_lead(conn: Conn, lead_id: int) -> list[Any]:
    """Everything that came back about one lead, in time order: whole `event` rows."""
    from sqlalchemy import select

    from campaignctl.store.tables import EVENT

    return list(
        connection(conn).execute(
            select(EVENT)
            .where(EVENT.c.lead_id == lead_id)
            .order_by(EVENT.c.occurred_at, EVENT.c.id)
        )
    )


def delivery_counts(conn: Readable, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, step, status, count): these campaigns' messages by their furthest delivery
    event (DELIVERY_RANK: statuses only move forward, whatever order they were recorded in),
    each message once; status is `delivered`, `read` (a delivered event whose provider status
    was read) or `undelivered` (undelivered, failed or bounce)."""
    r = reader(conn)
    is_read = f"(kind = 'delivered' AND {r.dialect.json_text('detail', 'status')} = 'read')"
    ranks = " ".join(f"WHEN kind = '{k}' THEN {n}" for k, n in DELIVERY_RANK.items() if k != "read")
    return list(
        r.rows(
            "SELECT message.campaign, message.step, ranked.status, count(*) FROM ("
            f"SELECT message_id, CASE WHEN {is_read} THEN 'read' "
            "WHEN kind = 'delivered' THEN 'delivered' ELSE 'undelivered' END AS status, "
            "row_number() OVER (PARTITION BY message_id ORDER BY "
            f"CASE WHEN {is_read} THEN {DELIVERY_RANK['read']} {ranks} ELSE 0 END DESC, "
            "occurred_at DESC, id DESC) AS n "
            f"FROM event WHERE kind IN {marks(DELIVERY_KINDS)} AND message_id IS NOT NULL"
            ") AS ranked JOIN message ON message.id = ranked.message_id "
            f"WHERE ranked.n = 1 AND message.campaign IN {marks(campaigns)} "
            "GROUP BY message.campaign, message.step, ranked.status",
            *(*DELIVERY_KINDS, *campaigns),
        )
    )
