"""Queries on A/B tests: when a step's test started, its decision, and its figures per variant.

A test starts once and is decided once per (campaign, step): both rows are written with the
dialect's INSERT-or-ignore, so when two processes race, the second write is dropped and both
read back the same row.

The figures count sent messages of the step by their `variant`. A reply is an inbound `reply`
event of the message, or of its lead at or after the message was sent (a reply in a new thread
still counts); a delivery is a `delivered` event of the message; a click is a `click` event of
the message that was not a machine's (`store.tracking`: however often it was clicked, a message
counts once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from campaignctl.store import tracking
from campaignctl.store.conn import Conn, Readable, connection, dialect_of
from campaignctl.store.reader import marks, reader
from campaignctl.store.states import SENT

#: The metrics counted in SQL.
METRICS = ("reply_rate", "delivery_rate", "click_rate")


@dataclass(frozen=True)
class Decision:
    """A step's A/B decision as stored (the columns of `store.schema.AbDecision`)."""

    campaign: str
    step: str
    decided_at: datetime
    winner: str
    metric: str
    rule: str
    reason: str
    z: float | None
    p_value: float | None
    confidence: float
    figures: dict[str, Any]


def started(conn: Readable, campaigns: Sequence[str]) -> dict[tuple[str, str], datetime]:
    """{(campaign, step): started_at} of the tests these campaigns started."""
    r = reader(conn)
    rows = r.rows(
        f"SELECT campaign, step, started_at FROM ab_test WHERE campaign IN {marks(campaigns)}",
        *campaigns,
    )
    return {(c, s): r.time(at) for c, s, at in rows}


def start(conn: Conn, campaign: str, step: str, now: datetime) -> datetime:
    """Record that the step's test starts at `now` unless it started before; when it did."""
    from sqlalchemy import select

    from campaignctl.store.tables import AB_TEST

    c = connection(conn)
    c.execute(
        dialect_of(c).insert_ignore(AB_TEST),
        [{"campaign": campaign, "step": step, "started_at": now}],
    )
    at = c.execute(
        select(AB_TEST.c.started_at).where(AB_TEST.c.campaign == campaign, AB_TEST.c.step == step)
    ).scalar_one()
    return at  # type: ignore[no-any-return]


def decisions(conn: Readable, campaigns: Sequence[str]) -> dict[tuple[str, str], Decision]:
    """{(campaign, step): decision} of these campaigns."""
    r = reader(conn)
    rows = r.rows(
        "SELECT campaign, step, decided_at, winner, metric, rule, reason, z, p_value, "
        f"confidence, figures FROM ab_decision WHERE campaign IN {marks(campaigns)}",
        *campaigns,
    )
    out = {}
    for campaign, step, at, winner, metric, rule, reason, z, p, confidence, figures in rows:
        out[(campaign, step)] = Decision(
            campaign,
            step,
            r.time(at),
            winner,
            metric,
            rule,
            reason,
            z,
            p,
            confidence,
            json.loads(figures) if isinstance(figures, str) else figures,
        )
    return out


def decide_once(conn: Conn, values: dict[str, Any]) -> bool:
    """Store a decision unless the step has one already; whether this one was stored."""
    from campaignctl.store.tables import AB_DECISION

    c = connection(conn)
    # RETURNING says whether the row went in on every database (PostgreSQL's rowcount is -1
    # once SQLAlchemy asks for the new key)
    stmt = dialect_of(c).insert_ignore(AB_DECISION).values(**values).returning(AB_DECISION.c.id)
    return c.execute(stmt).first() is not None


def _replied(until: datetime | None) -> Any:
    """A reply to the message: matched to it (its thread, its number), or from its lead after
    it was sent and matched to no message. Two EXISTS, each read through an index
    (`ix_event_message_kind`, `ix_event_lead_id`), never a scan of every event."""
    from sqlalchemy import exists, or_, select

    from campaignctl.store.tables import EVENT, MESSAGE

    late = [] if until is None else [EVENT.c.occurred_at <= until]
    matched = exists(
        select(EVENT.c.id).where(EVENT.c.message_id == MESSAGE.c.id, EVENT.c.kind == "reply", *late)
    )
    unmatched = exists(
        select(EVENT.c.id).where(
            EVENT.c.lead_id == MESSAGE.c.lead_id,
            EVENT.c.message_id.is_(None),
            EVENT.c.kind == "reply",
            EVENT.c.occurred_at >= MESSAGE.c.sent_at,
            *late,
        )
    )
    return or_(matched, unmatched)


def _delivered(until: datetime | None) -> Any:
    from sqlalchemy import and_, exists, select

    from campaignctl.store.tables import EVENT, MESSAGE

    cond = and_(EVENT.c.kind == "delivered", EVENT.c.message_id == MESSAGE.c.id)
    if until is not None:
        cond = and_(cond, EVENT.c.occurred_at <= until)
    return exists(select(EVENT.c.id).where(cond))


def _count(cond: Any) -> Any:
    from sqlalchemy import case, func

    return func.coalesce(func.sum(case((cond, 1), else_=0)), 0)


def figures(
    conn: Conn, campaign: str, step: str, metric: str, until: datetime
) -> dict[str, tuple[int, int]]:
    """{variant: (sends, successes)} of the step's messages sent up to `until`, successes by
    `metric` (replies, deliveries or a person's clicks recorded up to `until`)."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE

    if metric == "reply_rate":
        success: Any = _count(_replied(until))
    elif metric == "delivery_rate":
        success = _count(_delivered(until))
    elif metric == "click_rate":
        success = _count(tracking.human(tracking.CLICK, until))
    else:
        raise ValueError(f"unknown A/B metric {metric!r}: one of {', '.join(METRICS)}")
    rows = connection(conn).execute(
        select(MESSAGE.c.variant, func.count(), success)
        .where(
            MESSAGE.c.campaign == campaign,
            MESSAGE.c.step == step,
            MESSAGE.c.state == SENT,
            MESSAGE.c.variant.is_not(None),
            MESSAGE.c.sent_at <= until,
        )
        .group_by(MESSAGE.c.variant)
    )
    return {str(v): (int(n), int(k or 0)) for v, n, k in rows}


def variant_counts(conn: Conn, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, step, variant, sent, replies, delivered, clicked) of every sent message with
    a variant in these campaigns (`status`; clicked: by a person, see `figures`)."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE

    return list(
        connection(conn).execute(
            select(
                MESSAGE.c.campaign,
                MESSAGE.c.step,
                MESSAGE.c.variant,
                func.count(),
                _count(_replied(None)),
                _count(_delivered(None)),
                _count(tracking.human(tracking.CLICK)),
            )
            .where(
                MESSAGE.c.campaign.in_(campaigns),
                MESSAGE.c.state == SENT,
                MESSAGE.c.variant.is_not(None),
            )
            .group_by(MESSAGE.c.campaign, MESSAGE.c.step, MESSAGE.c.variant)
        )
    )
