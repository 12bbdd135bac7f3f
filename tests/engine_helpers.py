"""Helpers for the engine tests: a project folder, leads written through the store, a clock."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from campaignctl.channels.base import (
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)
from campaignctl.config import Config, load
from campaignctl.store import Lead, Message, Store

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)  # a Monday, 09:00 in Manila

HEADER = """\
[settings]
timezone = "{tz}"

[sender]
name = "Ana Cruz"
email = "ana@sunrise.example"
postal_address = "12 Ayala Ave, Makati City"
"""


def project(tmp_path: Path, body: str, tz: str = "UTC") -> Config:
    """Write a campaign file (settings and sender, then `body`) and load it."""
    (tmp_path / "campaigns.toml").write_text(HEADER.format(tz=tz) + body)
    return load(tmp_path / "campaigns.toml")


def add_leads(store: Store, n: int, start: int = 0, **fields: Any) -> list[int]:
    """n leads written through Store.write(); emails l<i>@ex.com, phones +1212555<i>."""
    with store.write() as s:
        leads = [
            Lead(
                email=f"l{i}@ex.com",
                phone=f"+1212555{i:04d}" if i < 10000 else f"+1646{i:07d}",
                first_name=f"N{i}",
                **fields,
            )
            for i in range(start, start + n)
        ]
        s.add_all(leads)
        s.flush()
        return [lead.id for lead in leads if lead.id is not None]


def messages(store: Store) -> list[Message]:
    with store.read() as s:
        return list(s.exec(select(Message).order_by(col(Message.id))))


def sent_times(store: Store, channel: str | None = None) -> list[datetime]:
    return sorted(
        m.sent_at
        for m in messages(store)
        if m.state == "sent" and m.sent_at and (channel is None or m.channel == channel)
    )


def outbox_files(folder: Path) -> list[dict[str, Any]]:
    """The .json messages an outbox wrote."""
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@dataclass
class ScriptedChannel:
    """A channel through the real seam whose answers a test scripts per recipient.

    `errors[to]` is a list of ChannelErrors raised on successive sends to `to`; after that it
    accepts. `reconcile_answer` is what it says about a lost outcome.
    """

    name: str
    kind: str = "sms"
    errors: dict[str, list[ChannelError]] = field(default_factory=dict)
    reconcile_answer: Reconciled = Reconciled.UNKNOWN
    sent: list[Outgoing] = field(default_factory=list)
    attempts: list[Outgoing] = field(default_factory=list)

    def send(self, msg: Outgoing) -> Sent:
        self.attempts.append(msg)
        queue = self.errors.get(msg.to)
        if queue:
            raise queue.pop(0)
        self.sent.append(msg)
        return Sent(provider_id=f"SM{msg.id}")

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        return Reconciliation(self.reconcile_answer, provider_id=f"SM{msg.id}")

    def close(self) -> None:
        pass


def transient(code: str = "429") -> ChannelError:
    return ChannelError(ErrorKind.TRANSIENT, "Too Many Requests", code=code, retry_after=None)


def days(n: float) -> timedelta:
    return timedelta(days=n)
