"""The tables as SQLModel classes, for the queries that load whole rows as objects.

The schema is created by the named migrations in `store.migrations`; the classes below describe
the same tables (a test holds the two together), and so do the Core tables of `store.tables`,
which the query modules use (re-exported here with the message states). The lead's fixed
fields are spelled in `store.fields`; `Lead` is checked against them at import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel

from campaignctl.store.fields import LEAD_BOOKKEEPING, LEAD_FIXED_FIELDS
from campaignctl.store.states import (
    FAILED,
    MESSAGE_STATES,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    UNCERTAIN,
    utcnow,
)
from campaignctl.store.tables import (
    AB_DECISION,
    AB_TEST,
    ENROLMENT,
    EVENT,
    JOURNAL,
    LEAD,
    MESSAGE,
    META,
    OPTOUT,
    SUPPRESSION,
    TEST_SEND,
    TRIGGER_EVENT,
    UTCDateTime,
)

__all__ = [
    "AB_DECISION",
    "AB_TEST",
    "ENROLMENT",
    "EVENT",
    "FAILED",
    "JOURNAL",
    "LEAD",
    "MESSAGE",
    "MESSAGE_STATES",
    "META",
    "OPTOUT",
    "PENDING",
    "SENDING",
    "SENT",
    "SKIPPED",
    "SUPPRESSION",
    "TEST_SEND",
    "TRIGGER_EVENT",
    "UNCERTAIN",
    "AbDecision",
    "AbTest",
    "Enrolment",
    "Event",
    "Journal",
    "Lead",
    "Message",
    "Meta",
    "OptOut",
    "Suppression",
    "TestSend",
    "TriggerEvent",
    "UTCDateTime",
    "utcnow",
]


class Lead(SQLModel, table=True):
    __tablename__ = "lead"
    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, unique=True)
    phone: str | None = Field(default=None, unique=True)
    first_name: str | None = None
    last_name: str | None = None
    timezone: str | None = None
    status: str = "new"
    tags: list[str] = Field(default_factory=list, sa_type=JSON)
    attrs: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class OptOut(SQLModel, table=True):
    """A lead who must not be messaged on `channel` again (`*` means every channel)."""

    __tablename__ = "optout"
    __table_args__ = (UniqueConstraint("lead_id", "channel"),)
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int = Field(foreign_key="lead.id", index=True)
    channel: str
    source: str = "manual"  # manual | keyword | bounce | unsubscribe | provider
    detail: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Enrolment(SQLModel, table=True):
    """A lead in a campaign; `state` is active, completed or stopped (with `reason`)."""

    __tablename__ = "enrolment"
    __table_args__ = (UniqueConstraint("campaign", "lead_id"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    lead_id: int = Field(foreign_key="lead.id", index=True)
    state: str = "active"
    reason: str | None = None
    enrolled_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Message(SQLModel, table=True):
    """One (campaign, step, lead, trigger event): the unique key is what makes a message go at
    most once (`trigger_event` is 0 but for a trigger campaign's messages, one per event, and a
    `reenrol` sequence's later runs, one per run)."""

    __tablename__ = "message"
    __table_args__ = (UniqueConstraint("campaign", "step", "lead_id", "trigger_event"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    step: str
    step_index: int
    lead_id: int = Field(foreign_key="lead.id", index=True)
    channel: str
    variant: str | None = None
    state: str = PENDING
    due_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    claimed_by: str | None = None
    claimed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    recipient: str | None = None
    provider_id: str | None = None
    message_id: str | None = None  # RFC 5322 Message-ID for email, generated before sending
    thread_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    reason: str | None = None  # why skipped / why waiting
    reason_code: str | None = None  # the same as a word: window, opted_out, ... (engine.decide.Why)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # when it was first claimed: transient errors fail it only `give_up_after` later
    first_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # what was handed to the channel at the last claim (reconcile and threading read it)
    subject: str | None = None
    body: str | None = None  # the text part (an SMS's whole text)
    content_sid: str | None = None
    # the files attached at the last claim: [{"file": path as rendered, "size": bytes}]
    attachments: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    # which run of the sequence the message belongs to: a trigger campaign's event
    # (`trigger_event.id`); for a `reenrol` sequence enrolled again, minus the journal row of the
    # event that enrolled it; 0 for every other message
    trigger_event: int = 0


class Event(SQLModel, table=True):
    """Something that came back: reply, optout, optin, bounce, delivered, undelivered, help."""

    __tablename__ = "event"
    id: int | None = Field(default=None, primary_key=True)
    lead_id: int | None = Field(default=None, foreign_key="lead.id", index=True)
    message_id: int | None = Field(default=None, foreign_key="message.id")
    channel: str | None = None
    kind: str
    source_id: str | None = Field(default=None, unique=True)  # provider's id, so sync is idempotent
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # 1 once outgoing hooks have queued what they want of it (`campaignctl.hooks`)
    hooked: int = 0


class Journal(SQLModel, table=True):
    """What campaignctl decided or did, append-only: the facts a row overwrites (a message's
    deferrals and retries, a channel held at its limit, a lead's imports and changes). `explain`
    reads it beside the rows themselves and the inbound `event` table. Kinds: `store.journal`."""

    __tablename__ = "journal"
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime)
    kind: str
    lead_id: int | None = None  # None: about a channel (held at its limit, breaker open)
    campaign: str | None = None
    step: str | None = None
    message_id: int | None = None
    channel: str | None = None
    code: str | None = None  # a word: engine.decide.Why, an error code, a field name
    source: str | None = None  # import, leads set, sync, engine, ...
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class TestSend(SQLModel, table=True):
    """A `send --test-to` message: counted by the channel's limits and pacing (see
    `store.messages.send_history`), never a lead's progress. The test address is not kept."""

    __tablename__ = "test_send"
    __test__ = False  # not a pytest test class
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    step: str
    channel: str
    state: str = SENDING  # sending (handed to the provider) | sent
    claimed_at: datetime = Field(sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    provider_id: str | None = None


class TriggerEvent(SQLModel, table=True):
    """One event given to `campaignctl trigger` for a trigger campaign: recorded once per
    (campaign, event id), in the transaction that enrols its matches; templates see `data` as
    `item` (the claim reads it by the message's `trigger_event`)."""

    __tablename__ = "trigger_event"
    __table_args__ = (UniqueConstraint("campaign", "event_id"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    event_id: str  # the event's `id`, as text (1 and "1" are the same event)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    received_at: datetime = Field(sa_type=UTCDateTime)
    enrolled: int = 0  # how many leads it enrolled


class Suppression(SQLModel, table=True):
    """An address that may never be contacted on `channel` (`*`: every channel), kept only as
    its keyed hash (`campaignctl.suppression.address_hash`), whether or not it is a lead's."""

    __tablename__ = "suppression"
    __table_args__ = (UniqueConstraint("hash", "channel"),)
    id: int | None = Field(default=None, primary_key=True)
    hash: str  # HMAC-SHA256 (hex) of the normalised address under the database's key
    channel: str
    source: str  # erased | import | manual
    note: str | None = None
    created_at: datetime = Field(sa_type=UTCDateTime)


class AbTest(SQLModel, table=True):
    """When a step's A/B test started: its first message past the window and address checks.
    The decision is due `ab.wait` later (read from the file, so a changed wait applies)."""

    __tablename__ = "ab_test"
    __table_args__ = (UniqueConstraint("campaign", "step", name="uq_ab_test"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    step: str
    started_at: datetime = Field(sa_type=UTCDateTime)


class AbDecision(SQLModel, table=True):
    """A step's A/B winner, decided once (a second insert is ignored), with its figures:
    {variant: {sends, successes, rate}} in the test group, the z-test's z and p-value, and the
    rule that decided (`campaignctl.abtest`: significant, not_significant, too_few_sends,
    not_tracked) in words in `reason`."""

    __tablename__ = "ab_decision"
    __table_args__ = (UniqueConstraint("campaign", "step", name="uq_ab_decision"),)
    id: int | None = Field(default=None, primary_key=True)
    campaign: str
    step: str
    decided_at: datetime = Field(sa_type=UTCDateTime)
    winner: str
    metric: str
    rule: str
    reason: str
    z: float | None = None
    p_value: float | None = None
    confidence: float
    figures: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)


class Worker(SQLModel, table=True):
    """A `send` or daemon process on some host: registered when it starts, its heartbeat moved
    on while it runs, gone when it stops. `id` is what its claims write in `claimed_by`; a
    worker whose heartbeat is too old is dead, and its claims are recovered (docs/scaling.md)."""

    __tablename__ = "worker"
    id: str = Field(primary_key=True)
    host: str
    pid: int
    started_at: datetime = Field(sa_type=UTCDateTime)
    heartbeat_at: datetime = Field(sa_type=UTCDateTime, index=True)


class Meta(SQLModel, table=True):
    """Small key/value state: sync cursors, daemon heartbeat."""

    __tablename__ = "meta"
    key: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


_lead_columns = set(SQLModel.metadata.tables[Lead.__tablename__].c.keys())
if _lead_columns != {*LEAD_FIXED_FIELDS, *LEAD_BOOKKEEPING}:  # pragma: no cover - a typo's guard
    raise RuntimeError(f"Lead's columns {sorted(_lead_columns)} differ from store.fields")


class HookDelivery(SQLModel, table=True):
    """One event to POST to one `[[hooks]]` URL: queued once (`idem_key` is unique per hook),
    delivered at least once, in order per lead (`campaignctl.hooks`). Holds ids, never personal
    data: the body is built from the live rows at each attempt, so erasure reaches it."""

    __tablename__ = "hook_delivery"
    __table_args__ = (UniqueConstraint("hook", "idem_key"),)
    id: int | None = Field(default=None, primary_key=True)
    hook: str  # the hook's URL
    event: str  # sent, delivered, replied, ...
    idem_key: str  # the Idempotency-Key header: the same fact always has the same key
    lead_id: int = Field(index=True)
    message_id: int | None = None
    event_id: int | None = None  # the `event` row it announces, if any
    occurred_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 0
    next_at: datetime = Field(sa_type=UTCDateTime)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None


class EarlyCallback(SQLModel, table=True):
    """A Twilio status callback that came before its message's sid was recorded (the engine
    records a batch's sids after sending the whole batch): kept, one per (sid, status), until
    the sid is ours (`inbound.settle_early`) or for 7 days. `resource` is the callback as
    `classify.twilio_webhook_resource` reads it."""

    __tablename__ = "early_callback"
    __table_args__ = (UniqueConstraint("provider_id", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    channel: str
    provider_id: str  # the Twilio sid (the unique key's first column: its index)
    status: str  # delivered, read, undelivered, failed
    resource: dict[str, Any] = Field(sa_type=JSON)
    received_at: datetime = Field(sa_type=UTCDateTime)
