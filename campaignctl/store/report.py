"""Queries for `campaignctl report`: a campaign's results counted in SQL, never row by row.

Every function returns a few grouped rows (per state, step and variant; per minute for the
replies; one count per day and segment for the sends), so a campaign of a million messages
takes the memory of a few thousand rows. docs/report.md says which index each one reads.

`since` limits each count to what happened at or after it: messages by their send time (a
failed message by when it last changed), enrolments by when they began, events by when they
occurred. An outcome (delivered, replied, ...) counts a sent message once:

- delivered / undelivered: the message's furthest delivery event (`events.DELIVERY_RANK`: a
  `read` status is delivered, and undelivered, failed or bounced is final), as `status` counts
  them;
- replied, opted out: an event of that kind matched to the message, or from its lead, matched
  to no message, that answers it: the lead's latest message sent at or before the event;
- bounced: a `bounce` event of the message;
- clicked: a `click` event of the message whose detail does not say {"machine": true}
  (mail scanners and link previews are left out).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import String, bindparam, case, cast, func, select, union_all

from campaignctl.store.conn import Conn, connection
from campaignctl.store.states import FAILED, SENT
from campaignctl.store.tables import ENROLMENT, EVENT, MESSAGE, UTCDateTime

#: The outcomes `outcome_counts` counts, in the order a report shows them.
OUTCOMES = ("delivered", "undelivered", "replied", "opted_out", "bounced", "clicked")
#: How many characters of a stored time name its minute ("2026-03-02 09:30"): the day charts
#: count per UTC minute in SQL and the caller folds the minutes into days of its time zone
#: (any zone's offset is a whole number of minutes).
_MINUTE = 16


def _since(column: Any, since: datetime | None) -> list[Any]:
    return [] if since is None else [column >= since]


def _minute(column: Any) -> Any:
    return func.substr(cast(column, String), 1, _MINUTE)


def _sent_or_changed() -> Any:
    return func.coalesce(MESSAGE.c.sent_at, MESSAGE.c.updated_at)


def message_counts(conn: Conn, campaign: str, since: datetime | None) -> list[Any]:
    """(state, step, variant, channel, count) of the campaign's messages: one pass over
    `ix_message_report`, in its order (no sort)."""
    m = MESSAGE.c
    return list(
        connection(conn).execute(
            select(m.state, m.step, m.variant, m.channel, func.count())
            .where(m.campaign == campaign, *_since(_sent_or_changed(), since))
            .group_by(m.state, m.step, m.variant, m.channel)
        )
    )


def failed_counts(conn: Conn, campaign: str, since: datetime | None) -> list[Any]:
    """(step, variant, error_code, count) of the campaign's failed messages."""
    m = MESSAGE.c
    return list(
        connection(conn).execute(
            select(m.step, m.variant, m.error_code, func.count())
            .where(m.campaign == campaign, m.state == FAILED, *_since(m.updated_at, since))
            .group_by(m.step, m.variant, m.error_code)
        )
    )


def enrolled_count(conn: Conn, campaign: str, since: datetime | None) -> int:
    """The campaign's enrolments (begun since `since`)."""
    e = ENROLMENT.c
    n = (
        connection(conn)
        .execute(select(func.count()).where(e.campaign == campaign, *_since(e.enrolled_at, since)))
        .scalar_one()
    )
    return int(n)


def _not_machine() -> Any:
    return func.coalesce(EVENT.c.detail["machine"].as_boolean(), False) == False  # noqa: E712


#: One bit per event kind, so a message's kinds add up to a mask of them.
_BITS = {
    "delivered": 1,
    "undelivered": 2,
    "reply": 4,
    "optout": 8,
    "bounce": 16,
    "click": 32,
    "failed": 64,
}
_UNDELIVERED = _BITS["undelivered"] | _BITS["bounce"] | _BITS["failed"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def outcome_counts(conn: Conn, since: datetime | None) -> list[Any]:
    """(campaign, state, step, variant, delivered, undelivered, replied, opted_out, bounced,
    clicked, any_click) of every message with an event, each message counted once per outcome
    (see the module's docstring; `any_click` counts machine hits too: whether clicks are
    tracked at all); only messages sent since `since` count. The caller keeps the `sent` rows
    of the campaigns it reports.

    The (message, kind) pairs are read from `ix_event_message_kind` alone, in its order, and
    each message's distinct kinds summed into one mask of them; each mask then looks up its
    message by its key, as the masks stream. No condition falls on the message table, so no
    database starts from a campaign's million messages and probes the events of each. A
    message with both a delivered and an undelivered kind of event counts as undelivered (not
    delivered is final, as for `status`). Clicks by people are read apart (their detail says
    whether a machine made them). A reply or opt-out matched to no
    message is `unmatched_counts`'."""
    e = EVENT.c
    # the bits are distinct powers of two, so the sum of a message's distinct bits is their OR
    bit = case(_BITS, value=e.kind, else_=0)
    per_message = (
        select(e.message_id.label("mid"), func.sum(bit.distinct()).label("mask"))
        .where(e.message_id.is_not(None))
        .group_by(e.message_id)
        .subquery("per_message")
    )
    p = per_message.c
    m = MESSAGE.c
    # the outer join lets SQLite stream the masks into the look-ups (an inner join had it
    # write them all to a temporary table first); a mask without its message counts nowhere
    counted = func.sum(case((m.sent_at >= (since or _EPOCH), 1), else_=0))
    c = connection(conn)
    rows = c.execute(
        select(m.campaign, m.state, m.step, m.variant, p.mask, counted)
        .join_from(per_message, MESSAGE, m.id == p.mid, isouter=True)
        .group_by(m.campaign, m.state, m.step, m.variant, p.mask)
    )
    out: dict[tuple[str, str, str, str | None], list[int]] = {}
    for camp, state, step, variant, mask, n in rows:
        if not n:
            continue
        figures = out.setdefault((camp, state, step, variant), [0] * 7)
        mask = int(mask or 0)
        # statuses only move forward and not delivered is final (events.DELIVERY_RANK): a
        # message with both kinds of event counts as undelivered, as `status` counts it
        if mask & _UNDELIVERED:
            figures[1] += n
        elif mask & _BITS["delivered"]:
            figures[0] += n
        for i, kind in enumerate(("reply", "optout", "bounce"), start=2):
            if mask & _BITS[kind]:
                figures[i] += n
        if mask & _BITS["click"]:
            figures[6] += n
    people = (
        select(m.campaign, m.state, m.step, m.variant, func.count(func.distinct(e.message_id)))
        .join_from(EVENT, MESSAGE, m.id == e.message_id)
        .where(e.kind == "click", _not_machine(), *_since(m.sent_at, since))
        .group_by(m.campaign, m.state, m.step, m.variant)
    )
    for camp, state, step, variant, n in c.execute(people):
        out.setdefault((camp, state, step, variant), [0] * 7)[5] += n
    return [(*key, *figures) for key, figures in sorted(out.items(), key=lambda kv: str(kv[0]))]


def _answered(since: datetime | None) -> Any:
    """(event id, kind, occurred_at, message id): each reply or opt-out matched to no message,
    with the message it answers: its lead's latest message sent at or before it (of any
    campaign). One look-up per such event through `ix_message_lead_id`."""
    e = EVENT.c
    mm = MESSAGE.alias("prior")
    latest = (
        select(mm.c.id)
        .where(mm.c.lead_id == e.lead_id, mm.c.sent_at <= e.occurred_at)
        .order_by(mm.c.sent_at.desc(), mm.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        select(e.id, e.kind, e.occurred_at, latest.label("mid"))
        .where(
            e.kind.in_(("reply", "optout")),
            e.message_id.is_(None),
            e.lead_id.is_not(None),
            *_since(e.occurred_at, since),
        )
        .subquery("answered")
    )


def unmatched_counts(conn: Conn, campaign: str, since: datetime | None) -> list[Any]:
    """(step, variant, kind, messages): the campaign's sent messages that a reply or opt-out
    matched to no message answers, and that no matched one of the same kind already counts."""
    answered = _answered(None)
    a = answered.c
    m = MESSAGE.c
    e = EVENT.c
    matched = select(e.id).where(e.message_id == m.id, e.kind == a.kind).exists()
    return list(
        connection(conn).execute(
            select(m.step, m.variant, a.kind, func.count(func.distinct(m.id)))
            .join_from(MESSAGE, answered, m.id == a.mid)
            .where(
                m.campaign == campaign,
                m.state == SENT,
                *_since(m.sent_at, since),
                ~matched,
            )
            .group_by(m.step, m.variant, a.kind)
        )
    )


def send_span(
    conn: Conn, campaign: str, segment: tuple[str, str | None, str], since: datetime | None
) -> tuple[datetime | None, datetime | None]:
    """The first and last send time of the campaign's messages of one (step, variant,
    channel): each one end of a range of `ix_message_report`."""
    where = _segment(campaign, segment) + _since(MESSAGE.c.sent_at, since)
    c = connection(conn)
    first = c.execute(select(func.min(MESSAGE.c.sent_at)).where(*where)).scalar_one()
    last = c.execute(select(func.max(MESSAGE.c.sent_at)).where(*where)).scalar_one()
    return _aware(first), _aware(last)


def _segment(campaign: str, segment: tuple[str, str | None, str]) -> list[Any]:
    step, variant, channel = segment
    m = MESSAGE.c
    return [
        m.campaign == campaign,
        m.state == SENT,
        m.step == step,
        m.variant.is_(None) if variant is None else m.variant == variant,
        m.channel == channel,
    ]


def _aware(t: Any) -> datetime | None:
    if t is None:
        return None
    at: datetime = datetime.fromisoformat(t) if isinstance(t, str) else t
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def sends_between(
    conn: Conn,
    campaign: str,
    segment: tuple[str, str | None, str],
    bounds: Sequence[datetime],
) -> list[int]:
    """How many of the campaign's messages of one (step, variant, channel) were sent in each
    span [bounds[i], bounds[i + 1]): each a range of `ix_message_report`, counted in it."""
    m = MESSAGE.c
    c = connection(conn)
    q = select(func.count()).where(
        *_segment(campaign, segment),
        m.sent_at >= bindparam("a", type_=UTCDateTime()),
        m.sent_at < bindparam("b", type_=UTCDateTime()),
    )
    return [int(c.execute(q, {"a": a, "b": b}).scalar_one()) for a, b in pairwise(bounds)]


def reply_times(conn: Conn, since: datetime | None) -> list[Any]:
    """(campaign, "YYYY-MM-DD HH:MM" in UTC, replies) of the replies to every campaign: matched
    to one of its messages, or answering one (`_answered`). Read from the reply events (no
    condition on the message table, so the database starts from the few replies, not from a
    campaign's messages); the caller keeps the campaigns it reports."""
    e = EVENT.c
    m = MESSAGE.c
    answered = _answered(since)
    a = answered.c
    matched = (
        select(m.campaign, e.occurred_at.label("at"))
        .join_from(EVENT, MESSAGE, m.id == e.message_id)
        .where(e.kind == "reply", *_since(e.occurred_at, since))
    )
    unmatched = (
        select(m.campaign, a.occurred_at.label("at"))
        .join_from(answered, MESSAGE, m.id == a.mid)
        .where(a.kind == "reply")
    )
    both = union_all(matched, unmatched).subquery("replies")
    minute = _minute(both.c.at).label("minute")
    return list(
        connection(conn).execute(
            select(both.c.campaign, minute, func.count()).group_by(both.c.campaign, minute)
        )
    )
