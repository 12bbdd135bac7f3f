"""Channels for tests that need no fake server: a scripted one, and the messages they take."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from campaignctl.channels.base import (
    ChannelError,
    ErrorKind,
    Outgoing,
    Reconciled,
    Reconciliation,
    Sent,
)


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


def outgoing(**overrides: object) -> Outgoing:
    """An email Outgoing as the engine would hand it over (override any field)."""
    from campaignctl.channels.mime import new_message_id

    fields: dict[str, object] = {
        "id": 1,
        "campaign": "welcome",
        "step": "hello",
        "channel": "email",
        "kind": "email",
        "to": "juan@example.com",
        "text": "Hi Juan!\n\n-- \nAna Cruz, 12 Ayala Ave, Makati City",
        "html": "<p>Hi Juan!</p>",
        "subject": "Welcome, Juan!",
        "claimed_at": datetime(2026, 11, 21, 8, 0, tzinfo=UTC),
        "rfc_message_id": new_message_id("ana@sunrise.example"),
    }
    fields.update(overrides)
    return Outgoing(**fields)  # type: ignore[arg-type]
