"""A channel that keeps messages in memory: `send --dry-run` and the planner send through it."""

from __future__ import annotations

from campaignctl.channels.base import Outgoing, Reconciled, Reconciliation, Sent


class MemoryChannel:
    """Accepts everything and remembers it; reconciles from what it remembers."""

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.sent: list[Outgoing] = []

    def send(self, msg: Outgoing) -> Sent:
        """Keep the message; its provider id is `memory:<message id>`."""
        self.sent.append(msg)
        return Sent(provider_id=f"memory:{msg.id}", thread_id=msg.thread_id)

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """Sent if this channel has it; a dry run cannot know about real providers."""
        if any(m.id == msg.id for m in self.sent):
            return Reconciliation(Reconciled.SENT, provider_id=f"memory:{msg.id}")
        return Reconciliation(Reconciled.UNKNOWN)

    def close(self) -> None:
        """Nothing to release."""
