"""Queries for what comes back: inbound events, opt-outs, opt-ins, stopped sequences, and the
sent messages replies are matched against. All run in the caller's session (one transaction per
sync batch, per send batch or per `leads optout`); `campaignctl.suppression` groups the writes."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, literal
from sqlmodel import Session, col, delete, func, select, update

from campaignctl.store.conn import Conn, connection
from campaignctl.store.schema import (
    EVENT,
    FAILED,
    MESSAGE,
    PENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    Enrolment,
    Event,
    Lead,
    Message,
    OptOut,
)

#: An opt-out of every channel.
ALL_CHANNELS = "*"
#: Event kinds that say what became of a sent message: delivered (`read` when the provider's
#: status said so), or not delivered (undelivered, failed, bounced).
DELIVERY_KINDS = ("delivered", "undelivered", "failed", "bounce")


def handed_over(session: Session, channel: str | None = None) -> Iterator[Message]:
    """Every message handed (or maybe handed) to a provider, optionally on one channel, oldest
    first (so a thread id maps to the thread's first message)."""
    q = select(Message).where(col(Message.state).in_((SENT, UNCERTAIN, FAILED)))
    if channel is not None:
        q = q.where(Message.channel == channel)
    yield from session.exec(q.order_by(col(Message.sent_at), col(Message.id)))


def lead_by_email(session: Session, email: str) -> Lead | None:
    """The lead with this email, in any case (`email` given in lower case)."""
    return session.exec(select(Lead).where(func.lower(Lead.email) == email)).first()


def lead_by_phone(session: Session, phone: str) -> Lead | None:
    """The lead with this E.164 phone."""
    return session.exec(select(Lead).where(Lead.phone == phone)).first()


def lead_by_address(session: Session, address: str) -> Lead | None:
    """The lead with this normalised address: a lower-case email or an E.164 phone."""
    if "@" in address:
        return lead_by_email(session, address)
    return lead_by_phone(session, address)


def seen(session: Session, source_id: str | None) -> bool:
    """Whether an event with this provider id is recorded already."""
    return session.exec(select(Event.id).where(Event.source_id == source_id)).first() is not None


def add_event(session: Session, **values: Any) -> None:
    """Record an event; flushed at once, so the unique source_id also holds within a batch."""
    session.add(Event(**values))
    session.flush()


def mark_message_error(
    session: Session, message_id: int, code: str, error: str | None, now: datetime
) -> None:
    """Note a permanent delivery error on a sent message (its state stays `sent`)."""
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
    existing = session.exec(
        select(OptOut).where(OptOut.lead_id == lead_id, OptOut.channel == channel)
    ).first()
    if existing is None:
        session.add(
            OptOut(lead_id=lead_id, channel=channel, source=source, detail=detail, created_at=now)
        )


def remove_optout(session: Session, lead_id: int, channel: str) -> None:
    session.exec(
        delete(OptOut).where(col(OptOut.lead_id) == lead_id, col(OptOut.channel) == channel)
    )


def optout_channels(session: Session, lead_id: int, channels: Sequence[str]) -> list[str]:
    """Which of `channels` the lead is opted out of."""
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
    rows = session.exec(
        select(OptOut.channel, OptOut.source).where(
            OptOut.lead_id == lead_id, col(OptOut.channel).in_(channels)
        )
    )
    return dict(rows.all())


def skip_pending(
    session: Session,
    lead_id: int,
    reason: str,
    now: datetime,
    *,
    channel: str = ALL_CHANNELS,
    campaigns: Collection[str] | None = None,
) -> int:
    """Skip the lead's pending messages (on `channel`, of `campaigns`); returns how many."""
    # The lead's few messages are read by `lead_id` alone, then updated by id: with `state` or
    # `channel` beside it in one WHERE, SQLite (without ANALYZE's statistics) may pick their
    # index instead of the lead's and scan every pending message (40 ms at 100,000, for each
    # opt-out: the web unsubscribe's one-click POSTs come in hundreds per second).
    mine = session.exec(
        select(Message.id, Message.state, Message.channel, Message.campaign).where(
            col(Message.lead_id) == lead_id
        )
    ).all()
    ids = [
        mid
        for mid, state, ch, campaign in mine
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
    return list(
        session.exec(
            select(Enrolment).where(Enrolment.lead_id == lead_id, Enrolment.state == "active")
        ).all()
    )


def end_enrolment(session: Session, e: Enrolment, state: str, reason: str, now: datetime) -> None:
    e.state, e.reason, e.updated_at = state, reason, now
    session.add(e)


def of_lead(session: Session, lead_id: int) -> list[Event]:
    """Everything that came back about one lead, in time order."""
    return list(
        session.exec(
            select(Event)
            .where(Event.lead_id == lead_id)
            .order_by(col(Event.occurred_at), col(Event.id))
        ).all()
    )


def delivery_counts(conn: Conn, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, step, status, count): these campaigns' messages by their latest delivery
    event, each message once; status is `delivered`, `read` (a delivered event whose provider
    status was read) or `undelivered` (undelivered, failed or bounce)."""
    status = case(
        (
            (EVENT.c.kind == "delivered") & (EVENT.c.detail["status"].as_string() == "read"),
            literal("read"),
        ),
        (EVENT.c.kind == "delivered", literal("delivered")),
        else_=literal("undelivered"),
    )
    latest = func.row_number().over(
        partition_by=EVENT.c.message_id, order_by=(EVENT.c.occurred_at.desc(), EVENT.c.id.desc())
    )
    ranked = (
        select(EVENT.c.message_id, status.label("status"), latest.label("rank"))
        .where(EVENT.c.kind.in_(DELIVERY_KINDS), EVENT.c.message_id.is_not(None))
        .subquery()
    )
    return list(
        connection(conn).execute(
            select(MESSAGE.c.campaign, MESSAGE.c.step, ranked.c.status, func.count())
            .join_from(ranked, MESSAGE, MESSAGE.c.id == ranked.c.message_id)
            .where(ranked.c.rank == 1, MESSAGE.c.campaign.in_(campaigns))
            .group_by(MESSAGE.c.campaign, MESSAGE.c.step, ranked.c.status)
        )
    )
