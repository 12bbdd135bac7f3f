"""The tables as SQLAlchemy Core objects, and the message states: what the query modules use.

`store.schema` declares the same tables as SQLModel classes for the few queries that load whole
rows as objects (`store.events`); the query modules build their statements on these, so that a
command that only reads (`status`, `plan`, `leads list`, `messages list`) never imports SQLModel
or SQLAlchemy's ORM (issue 15; tests/test_startup.py holds it, and tests/test_store.py holds
these tables equal to the classes).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from campaignctl.store.states import utcnow


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in and out; stored naive in UTC, so text order is time order."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

LEAD = Table(
    "lead",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("email", String(), unique=True),
    Column("phone", String(), unique=True),
    Column("first_name", String()),
    Column("last_name", String()),
    Column("timezone", String()),
    Column("status", String(), nullable=False, default="new"),
    Column("tags", JSON(), nullable=False, default=list),
    Column("attrs", JSON(), nullable=False, default=dict),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
)


OPTOUT = Table(
    "optout",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("lead_id", Integer(), ForeignKey("lead.id"), index=True, nullable=False),
    Column("channel", String(), nullable=False),
    Column("source", String(), nullable=False, default="manual"),
    Column("detail", String()),
    Column("created_at", UTCDateTime(), nullable=False, default=utcnow),
    UniqueConstraint("lead_id", "channel"),
)


ENROLMENT = Table(
    "enrolment",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("campaign", String(), nullable=False),
    Column("lead_id", Integer(), ForeignKey("lead.id"), index=True, nullable=False),
    Column("state", String(), nullable=False, default="active"),
    Column("reason", String()),
    Column("enrolled_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
    UniqueConstraint("campaign", "lead_id"),
)


MESSAGE = Table(
    "message",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("campaign", String(), nullable=False),
    Column("step", String(), nullable=False),
    Column("step_index", Integer(), nullable=False),
    Column("lead_id", Integer(), ForeignKey("lead.id"), index=True, nullable=False),
    Column("channel", String(), nullable=False),
    Column("variant", String()),
    Column("state", String(), nullable=False, default="pending"),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer(), nullable=False, default=0),
    Column("claimed_by", String()),
    Column("claimed_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Column("recipient", String()),
    Column("provider_id", String()),
    Column("message_id", String()),
    Column("thread_id", String()),
    Column("error_code", String()),
    Column("error", String()),
    Column("reason", String()),
    Column("reason_code", String()),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("first_attempt_at", UTCDateTime()),
    Column("subject", String()),
    Column("body", String()),
    Column("content_sid", String()),
    Column("attachments", JSON()),
    Column("trigger_event", Integer(), nullable=False, default=0),
    UniqueConstraint("campaign", "step", "lead_id", "trigger_event"),
)


EVENT = Table(
    "event",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("lead_id", Integer(), ForeignKey("lead.id"), index=True),
    Column("message_id", Integer(), ForeignKey("message.id")),
    Column("channel", String()),
    Column("kind", String(), nullable=False),
    Column("source_id", String(), unique=True),
    Column("detail", JSON(), nullable=False, default=dict),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("hooked", Integer(), nullable=False, default=0),
)


META = Table(
    "meta",
    metadata,
    Column("key", String(), primary_key=True),
    Column("value", String(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False, default=utcnow),
)


JOURNAL = Table(
    "journal",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("kind", String(), nullable=False),
    Column("lead_id", Integer()),
    Column("campaign", String()),
    Column("step", String()),
    Column("message_id", Integer()),
    Column("channel", String()),
    Column("code", String()),
    Column("source", String()),
    Column("detail", JSON(), nullable=False, default=dict),
)


TEST_SEND = Table(
    "test_send",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("campaign", String(), nullable=False),
    Column("step", String(), nullable=False),
    Column("channel", String(), nullable=False),
    Column("state", String(), nullable=False, default="sending"),
    Column("claimed_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime()),
    Column("provider_id", String()),
)


TRIGGER_EVENT = Table(
    "trigger_event",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("campaign", String(), nullable=False),
    Column("event_id", String(), nullable=False),
    Column("data", JSON(), nullable=False, default=dict),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("enrolled", Integer(), nullable=False, default=0),
    UniqueConstraint("campaign", "event_id"),
)


SUPPRESSION = Table(
    "suppression",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("hash", String(), nullable=False),
    Column("channel", String(), nullable=False),
    Column("source", String(), nullable=False),
    Column("note", String()),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint("hash", "channel"),
)


AB_TEST = Table(
    "ab_test",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("campaign", String(), nullable=False),
    Column("step", String(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    UniqueConstraint("campaign", "step", name="uq_ab_test"),
)


AB_DECISION = Table(
    "ab_decision",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("campaign", String(), nullable=False),
    Column("step", String(), nullable=False),
    Column("decided_at", UTCDateTime(), nullable=False),
    Column("winner", String(), nullable=False),
    Column("metric", String(), nullable=False),
    Column("rule", String(), nullable=False),
    Column("reason", String(), nullable=False),
    Column("z", Float()),
    Column("p_value", Float()),
    Column("confidence", Float(), nullable=False),
    Column("figures", JSON(), nullable=False, default=dict),
    UniqueConstraint("campaign", "step", name="uq_ab_decision"),
)


HOOK_DELIVERY = Table(
    "hook_delivery",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("hook", String(), nullable=False),
    Column("event", String(), nullable=False),
    Column("idem_key", String(), nullable=False),
    Column("lead_id", Integer(), nullable=False, index=True),
    Column("message_id", Integer()),
    Column("event_id", Integer()),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("attempts", Integer(), nullable=False, default=0),
    Column("next_at", UTCDateTime(), nullable=False),
    Column("lease_until", UTCDateTime()),
    Column("delivered_at", UTCDateTime()),
    Column("last_error", String()),
    UniqueConstraint("hook", "idem_key"),
)


WORKER = Table(
    "worker",
    metadata,
    Column("id", String(), primary_key=True),
    Column("host", String(), nullable=False),
    Column("pid", Integer(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False, index=True),
)


EARLY_CALLBACK = Table(
    "early_callback",
    metadata,
    Column("id", Integer(), primary_key=True),
    Column("channel", String(), nullable=False),
    Column("provider_id", String(), nullable=False),
    Column("status", String(), nullable=False),
    Column("resource", JSON(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("provider_id", "status"),
)
