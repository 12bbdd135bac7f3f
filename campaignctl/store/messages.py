"""Queries on the message ledger: claims, send history, outcomes, recovery and reconcile lookups.

The engine and the planner call these; each takes the session (or connection) of the
transaction it belongs to. Bulk writes go through `Writes`, gathered and run as executemany
batches, so the claim loop costs what it cost when the SQL lived in the engine.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from campaignctl.store.bulk import Executable, many
from campaignctl.store.conn import Conn, Readable, connection, dialect_of
from campaignctl.store.reader import Reader, marks, reader
from campaignctl.store.states import PENDING, SENDING, SENT, SKIPPED, UNCERTAIN


def _times(r: Reader, rows: Iterable[Any]) -> Iterator[datetime]:
    """The first column of `rows`, stored times, as aware datetimes."""
    for (at,) in rows:
        yield r.time(at)


def send_history(conn: Readable, channel: str, since: datetime) -> list[datetime]:
    """Send instants after `since` on `channel` that limits count, from every process, sorted.

    `sending` and `uncertain` messages count as sent: they may well have gone out, and so do
    `send --test-to` messages (a row in flight by its claim). One statement, so one snapshot:
    on PostgreSQL, where each statement of a transaction sees the commits made before it
    began, a message recorded `sent` between two separate reads (one of the sent, one of those
    in flight) would be in neither.
    """
    r = reader(conn)
    rows = r.rows(
        "SELECT sent_at FROM message WHERE channel = ? AND sent_at > ? AND state = ? "
        "UNION ALL SELECT claimed_at FROM message "
        "WHERE state IN (?, ?) AND channel = ? AND claimed_at > ? "
        "UNION ALL SELECT coalesce(sent_at, claimed_at) FROM test_send "
        "WHERE channel = ? AND claimed_at > ?",
        *(channel, since, SENT, SENDING, UNCERTAIN, channel, since, channel, since),
    )
    return sorted(_times(r, rows))


def lead_sends(conn: Conn, lead_ids: Sequence[int], since: datetime) -> dict[int, list[datetime]]:
    """The leads' sends after `since` on every channel, as the frequency cap counts them: `sent`
    ones at sent_at, `sending` and `uncertain` ones at their claim (they may have gone out).
    One query (through the lead_id index) for a batch of candidates; test sends are no lead's."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE

    out: dict[int, list[datetime]] = defaultdict(list)
    if not lead_ids:
        return out
    # only lead_id is indexable here: a condition on state would let SQLite pick the
    # (state, due_at) index and read every sent message instead of these leads' few rows
    rows = connection(conn).execute(
        select(MESSAGE.c.lead_id, MESSAGE.c.state, MESSAGE.c.sent_at, MESSAGE.c.claimed_at).where(
            MESSAGE.c.lead_id.in_(sorted(set(lead_ids))),
            func.coalesce(MESSAGE.c.sent_at, MESSAGE.c.claimed_at) > since,
        )
    )
    for lead_id, state, sent_at, claimed_at in rows:
        at = sent_at if state == SENT else claimed_at if state in _IN_FLIGHT else None
        if at is not None and at > since:
            out[lead_id].append(at)
    return out


#: Messages that may have gone out: the limits and the frequency cap count them at their claim.
_IN_FLIGHT = (SENDING, UNCERTAIN)


def all_lead_sends(
    conn: Readable, channels: Sequence[str], since: datetime
) -> dict[int, list[datetime]]:
    """Every lead's sends after `since` (as `lead_sends` counts them), for the planner."""
    r = reader(conn)
    out: dict[int, list[datetime]] = defaultdict(list)
    rows = r.rows(
        f"SELECT lead_id, sent_at FROM message WHERE channel IN {marks(channels)} "
        "AND sent_at > ? AND state = ? "
        "UNION ALL SELECT lead_id, claimed_at FROM message "
        "WHERE state IN (?, ?) AND claimed_at > ?",
        *channels,
        *(since, SENT, SENDING, UNCERTAIN, since),
    )
    for lead_id, at in rows:
        out[lead_id].append(r.time(at))
    return out


def first_send(conn: Readable, channel: str) -> datetime | None:
    """The earliest `sent` message on `channel` (a warm-up starts there), or None."""
    r = reader(conn)
    return r.time_or_none(
        r.value("SELECT min(sent_at) FROM message WHERE channel = ? AND state = ?", channel, SENT)
    )


def add_test_send(conn: Conn, campaign: str, step: str, channel: str, now: datetime) -> int:
    """Record a `send --test-to` message as in flight before its provider is called; its id."""
    from sqlalchemy import insert

    from campaignctl.store.tables import TEST_SEND

    result = connection(conn).execute(
        insert(TEST_SEND).values(
            campaign=campaign, step=step, channel=channel, state=SENDING, claimed_at=now
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def finish_test_send(conn: Conn, row_id: int, now: datetime, provider_id: str | None) -> None:
    """A test message the provider accepted: it counts from `now`. With `provider_id` None it
    never left (the provider refused it): the row goes, and the limits no longer count it."""
    from sqlalchemy import update

    from campaignctl.store.tables import TEST_SEND

    c = connection(conn)
    if provider_id is None:
        c.execute(TEST_SEND.delete().where(TEST_SEND.c.id == row_id))
        return
    c.execute(
        update(TEST_SEND)
        .where(TEST_SEND.c.id == row_id)
        .values(state=SENT, sent_at=now, provider_id=provider_id)
    )


class Writes:
    """Row updates and inserts gathered during a transaction and run as executemany batches."""

    def __init__(self) -> None:
        self.updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        self.messages: list[dict[str, Any]] = []
        self.enrolments: dict[tuple[str, str | None], list[dict[str, Any]]] = defaultdict(list)
        self.journal: list[dict[str, Any]] = []
        self.hooks: list[dict[str, Any]] = []

    def log(self, entry: dict[str, Any]) -> None:
        """Append a journal row (`store.journal.entry`) with this batch."""
        self.journal.append(entry)

    def set(self, row_id: int, now: datetime, **values: Any) -> None:
        values["updated_at"] = now
        if "reason" in values:
            values.setdefault("reason_code", None)  # a new reason never keeps an old code
        self.updates[tuple(sorted(values))].append({"_id": row_id, **values})

    def flush(self, conn: Conn) -> None:
        from sqlalchemy import insert

        from campaignctl.store.tables import HOOK_DELIVERY, JOURNAL, MESSAGE

        c = connection(conn)
        for keys, rows in self.updates.items():
            many(c, ("message", keys), partial(_message_update, keys), rows)
        if self.messages:
            c.execute(dialect_of(c).insert_ignore(MESSAGE), self.messages)
        for (state, reason), rows in self.enrolments.items():
            for row in rows:
                row["_state"], row["_reason"] = state, reason
            many(c, ("enrolment",), _enrolment_end, rows)
        if self.journal:
            c.execute(insert(JOURNAL), self.journal)
        if self.hooks:  # outgoing hooks' rows (`campaignctl.hooks.rows_for`)
            c.execute(dialect_of(c).insert_ignore(HOOK_DELIVERY), self.hooks)
        self.hooks.clear()
        self.updates.clear()
        self.journal.clear()
        self.messages.clear()
        self.enrolments.clear()

    def end_enrolment(
        self, campaign: str, lead_id: int, state: str, reason: str | None, now: datetime
    ) -> None:
        self.enrolments[(state, reason)].append(
            {"_campaign": campaign, "_lead": lead_id, "_now": now}
        )


def _message_update(keys: tuple[str, ...]) -> Executable:
    from sqlalchemy import bindparam, update

    from campaignctl.store.tables import MESSAGE

    return (
        update(MESSAGE)
        .where(MESSAGE.c.id == bindparam("_id"))
        .values({k: bindparam(k) for k in keys})
    )


def _enrolment_end() -> Executable:
    from sqlalchemy import bindparam, update

    from campaignctl.store.tables import ENROLMENT

    return (
        update(ENROLMENT)
        .where(
            ENROLMENT.c.campaign == bindparam("_campaign"),
            ENROLMENT.c.lead_id == bindparam("_lead"),
            ENROLMENT.c.state == "active",
        )
        .values(
            state=bindparam("_state"), reason=bindparam("_reason"), updated_at=bindparam("_now")
        )
    )


def enrol(conn: Conn, enrolments: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
    """Insert new enrolments and their first messages (a message already there is kept)."""
    from sqlalchemy import insert

    from campaignctl.store.tables import ENROLMENT, MESSAGE

    c = connection(conn)
    c.execute(insert(ENROLMENT), enrolments)
    c.execute(dialect_of(c).insert_ignore(MESSAGE), messages)


def skip_pending(
    conn: Conn, campaigns: Sequence[str], reason: str, now: datetime, code: str | None = None
) -> None:
    """Pending messages of these campaigns become skipped, with `reason` (and its `code`)."""
    from sqlalchemy import update

    from campaignctl.store.tables import MESSAGE

    connection(conn).execute(
        update(MESSAGE)
        .where(MESSAGE.c.state == PENDING, MESSAGE.c.campaign.in_(campaigns))
        .values(state=SKIPPED, reason=reason, reason_code=code, updated_at=now)
    )


def sending(conn: Conn) -> list[Any]:
    """Claimed messages: (id, claimed_by, claimed_at)."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    return list(
        connection(conn).execute(
            select(MESSAGE.c.id, MESSAGE.c.claimed_by, MESSAGE.c.claimed_at).where(
                MESSAGE.c.state == SENDING
            )
        )
    )


def mark_uncertain(conn: Conn, ids: Sequence[int], reason: str, now: datetime) -> None:
    """These still-`sending` messages become uncertain (their process is gone), journalled."""
    from sqlalchemy import JSON, insert, literal, select, update

    from campaignctl.store.tables import JOURNAL, MESSAGE, UTCDateTime

    c = connection(conn)
    c.execute(
        insert(JOURNAL).from_select(
            [
                "at",
                "kind",
                "lead_id",
                "campaign",
                "step",
                "message_id",
                "channel",
                "source",
                "detail",
            ],
            select(
                literal(now, UTCDateTime()),
                literal("message.uncertain"),
                MESSAGE.c.lead_id,
                MESSAGE.c.campaign,
                MESSAGE.c.step,
                MESSAGE.c.id,
                MESSAGE.c.channel,
                literal("engine"),
                literal({"reason": reason}, JSON()),
            ).where(MESSAGE.c.id.in_(ids), MESSAGE.c.state == SENDING),
        )
    )
    c.execute(
        update(MESSAGE)
        .where(MESSAGE.c.id.in_(ids), MESSAGE.c.state == SENDING)
        .values(state=UNCERTAIN, reason=reason, reason_code=None, updated_at=now)
    )


def uncertain(conn: Conn, channels: Sequence[str]) -> list[Any]:
    """Uncertain messages on these channels, whole rows, oldest first."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    return list(
        connection(conn).execute(
            select(MESSAGE)
            .where(MESSAGE.c.state == UNCERTAIN, MESSAGE.c.channel.in_(channels))
            .order_by(MESSAGE.c.id)
        )
    )


def still_uncertain(conn: Conn, ids: Sequence[int]) -> set[int]:
    """Which of these messages are still `uncertain`, locked for this write transaction: a
    reconcile records only those (another process may have settled one meanwhile, and it may
    even have been claimed again since)."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    if not ids:
        return set()
    c = connection(conn)
    query = select(MESSAGE.c.id).where(MESSAGE.c.id.in_(sorted(ids)), MESSAGE.c.state == UNCERTAIN)
    return {int(r[0]) for r in c.execute(dialect_of(c).claim_rows(query).order_by(MESSAGE.c.id))}


def claimable(
    conn: Conn, channel: str, now: datetime, groups: Iterable[Sequence[str]], n: int
) -> list[Any]:
    """Up to `n` due pending messages on `channel`: (id, campaign, step, lead_id, attempts,
    first_attempt_at, due_at, trigger_event), the campaigns of the first group first, then by
    due time and id.

    One query per group, each ordered as the (state, due_at) index is, so SQLite reads only the
    rows it returns instead of sorting every due message. Each is a bounded candidate set read
    through `Dialect.claim_rows`: on PostgreSQL the rows are locked as they are read and rows
    another process is claiming are skipped (FOR UPDATE SKIP LOCKED), so daemons claiming at
    once take disjoint messages without waiting on each other.
    """
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    c = connection(conn)
    dialect = dialect_of(c)
    rows: list[Any] = []
    for group in groups:
        query = (
            select(
                MESSAGE.c.id,
                MESSAGE.c.campaign,
                MESSAGE.c.step,
                MESSAGE.c.lead_id,
                MESSAGE.c.attempts,
                MESSAGE.c.first_attempt_at,
                MESSAGE.c.due_at,
                MESSAGE.c.trigger_event,
            )
            .where(
                MESSAGE.c.state == PENDING,
                MESSAGE.c.due_at <= now,
                MESSAGE.c.channel == channel,
                MESSAGE.c.campaign.in_(group),
            )
            .order_by(MESSAGE.c.due_at, MESSAGE.c.id)
            .limit(n - len(rows))
        )
        rows += c.execute(dialect.claim_rows(query)).all()
        if len(rows) >= n:
            break
    return rows


def sent_thread(conn: Conn, campaign: str, step: str, lead_id: int) -> Any:
    """(message_id, thread_id, subject) of a sent message of (campaign, step, lead), or None."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    return (
        connection(conn)
        .execute(
            select(MESSAGE.c.message_id, MESSAGE.c.thread_id, MESSAGE.c.subject).where(
                MESSAGE.c.campaign == campaign,
                MESSAGE.c.step == step,
                MESSAGE.c.lead_id == lead_id,
                MESSAGE.c.state == SENT,
            )
        )
        .first()
    )


def due_counts(
    conn: Conn, now: datetime, campaigns: Sequence[str], channels: Sequence[str]
) -> list[Any]:
    """(campaign, step, channel, count) of pending messages due by `now`."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE

    return list(
        connection(conn).execute(
            select(MESSAGE.c.campaign, MESSAGE.c.step, MESSAGE.c.channel, func.count())
            .where(
                MESSAGE.c.state == PENDING,
                MESSAGE.c.due_at <= now,
                MESSAGE.c.campaign.in_(list(campaigns)),
                MESSAGE.c.channel.in_(channels),
            )
            .group_by(MESSAGE.c.campaign, MESSAGE.c.step, MESSAGE.c.channel)
        )
    )


def due_count(conn: Readable, channel: str, now: datetime) -> int:
    """How many pending messages of `channel` are due by `now`."""
    return int(
        reader(conn).value(
            "SELECT count(*) FROM message WHERE channel = ? AND state = ? AND due_at <= ?",
            *(channel, PENDING, now),
        )
    )


def next_due(
    conn: Conn, now: datetime, campaigns: Sequence[str], channels: Sequence[str]
) -> datetime | None:
    """The soonest due time of a pending message after `now`."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE

    value: datetime | None = (
        connection(conn)
        .execute(
            select(func.min(MESSAGE.c.due_at)).where(
                MESSAGE.c.state == PENDING,
                MESSAGE.c.due_at > now,
                MESSAGE.c.campaign.in_(list(campaigns)),
                MESSAGE.c.channel.in_(channels),
            )
        )
        .scalar()
    )
    return value


def state_counts(conn: Readable, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, step, state, count) of these campaigns' messages."""
    return list(
        reader(conn).rows(
            "SELECT campaign, step, state, count(*) FROM message "
            f"WHERE campaign IN {marks(campaigns)} GROUP BY campaign, step, state",
            *campaigns,
        )
    )


def skip_reason_counts(conn: Readable, campaigns: Sequence[str]) -> list[Any]:
    """(campaign, step, reason, count) of these campaigns' skipped messages; `reason` is the
    stored reason code, else (skipped before codes were stored) the reason text, else `other`."""
    return list(
        reader(conn).rows(
            "SELECT campaign, step, coalesce(reason_code, reason, 'other'), count(*) "
            f"FROM message WHERE campaign IN {marks(campaigns)} AND state = ? "
            "GROUP BY 1, 2, 3",
            *(*campaigns, SKIPPED),
        )
    )


#: The columns `listing` yields, in order.
LISTING_COLUMNS = (
    "id",
    "lead",
    "campaign",
    "step",
    "channel",
    "variant",
    "status",
    "reason",
    "reason_code",
    "provider_id",
    "attempts",
    "due_at",
    "claimed_at",
    "sent_at",
)


def listing(
    conn: Readable,
    *,
    campaign: str | None = None,
    step: str | None = None,
    state: str | None = None,
    lead_id: int | None = None,
    since: datetime | None = None,
) -> Iterator[tuple[Any, ...]]:
    """Messages as tuples of `LISTING_COLUMNS` (the lead by its email, else its phone; times
    aware UTC), oldest first, filtered, streamed from the cursor: memory stays flat whatever
    the count. `since`: changed (due, claimed, sent, skipped...) at or after it. Plain SQL:
    `messages list` loads no SQLAlchemy on an up-to-date SQLite file."""
    r = reader(conn)
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("m.campaign", campaign),
        ("m.step", step),
        ("m.state", state),
        ("m.lead_id", lead_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("m.updated_at >= ?")
        params.append(since)
    sql = (
        "SELECT m.id, coalesce(l.email, l.phone), m.campaign, m.step, m.channel, m.variant, "
        "m.state, m.reason, m.reason_code, m.provider_id, m.attempts, m.due_at, m.claimed_at, "
        "m.sent_at FROM message m LEFT JOIN lead l ON l.id = m.lead_id"
        + (f" WHERE {' AND '.join(where)}" if where else "")
        + " ORDER BY m.id"
    )
    time = Reader.time_or_none
    for *fixed, due, claimed, sent in r.stream(sql, *params):
        yield (*fixed, time(due), time(claimed), time(sent))


def campaign_names(conn: Readable) -> list[str]:
    """The campaigns that have messages (one read of the (campaign, step, lead) index). Plain
    SQL: `messages list --campaign` loads no SQLAlchemy on an up-to-date SQLite file."""
    rows = reader(conn).rows("SELECT DISTINCT campaign FROM message")
    return [r[0] for r in rows if r[0] is not None]


def queues(conn: Conn) -> list[Any]:
    """(channel, pending count, soonest due) per channel."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE

    return list(
        connection(conn).execute(
            select(MESSAGE.c.channel, func.count(), func.min(MESSAGE.c.due_at))
            .where(MESSAGE.c.state == PENDING)
            .group_by(MESSAGE.c.channel)
        )
    )


def sent_counts(conn: Conn, since: datetime) -> dict[str, int]:
    """channel -> messages sent since `since`, test sends included (the limits count them)."""
    from sqlalchemy import func, select

    from campaignctl.store.tables import MESSAGE, TEST_SEND

    c = connection(conn)
    counts: dict[str, int] = defaultdict(int)
    for table in (MESSAGE, TEST_SEND):
        for ch, n in c.execute(
            select(table.c.channel, func.count())
            .where(table.c.state == SENT, table.c.sent_at >= since)
            .group_by(table.c.channel)
        ):
            counts[ch] += n
    return dict(counts)


def plan_pending(conn: Readable, campaigns: list[str]) -> Iterator[Any]:
    """(campaign, step, lead_id, due_at) of these campaigns' pending messages, as plain tuples:
    `due_at` as stored, naive-UTC ISO text (`datetime.fromisoformat` reads it). Streamed: read
    them inside the transaction."""
    r = reader(conn)
    return r.dialect.pending_rows(r, PENDING, campaigns)


def sent_in(url: str, campaign: str, step: str | None = None) -> int:
    """Messages already sent for a campaign (or one step of it) in the database at `url`: 0 when
    it does not exist yet or no send has used it. Never creates a database."""
    from sqlalchemy import func, select
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

    from campaignctl.errors import CampaignctlError
    from campaignctl.store import Store
    from campaignctl.store.tables import MESSAGE

    store = Store.existing(url, migrate_now=False)
    if store is None:
        return 0
    try:
        with store.read() as session:
            query = (
                select(func.count())
                .select_from(MESSAGE)
                .where(MESSAGE.c.campaign == campaign, MESSAGE.c.state == SENT)
            )
            if step is not None:
                query = query.where(MESSAGE.c.step == step)
            return int(session.execute(query).scalar_one())
    except OperationalError as exc:
        if "no such table" in str(exc):
            return 0  # a database no send has used yet
        raise CampaignctlError(f"{url}: cannot read sent messages: {exc.orig}") from None
    except SQLAlchemyError as exc:
        raise CampaignctlError(f"{url}: cannot read sent messages: {exc}") from None
    finally:
        store.close()


def of_lead(conn: Conn, lead_id: int) -> list[Any]:
    """Every message of one lead, whole rows, in sequence order."""
    from sqlalchemy import select

    from campaignctl.store.tables import MESSAGE

    return list(
        connection(conn).execute(
            select(MESSAGE)
            .where(MESSAGE.c.lead_id == lead_id)
            .order_by(MESSAGE.c.campaign, MESSAGE.c.step_index, MESSAGE.c.id)
        )
    )
