"""A channel that keeps messages in memory: `send --dry-run` and the tests send through it."""

from __future__ import annotations

from collections.abc import Callable

from campaignctl.channels.base import Outgoing, Reconciled, Reconciliation, Sent


class MemoryChannel:
    """Accepts everything, and remembers it in `sent`; or, given `passes_to`, hands each message
    to it and remembers none (a dry run of a million messages holds none of them)."""

    def __init__(
        self, name: str, kind: str, passes_to: Callable[[Outgoing], None] | None = None
    ) -> None:
        self.name = name
        self.kind = kind
        self.sent: list[Outgoing] = []
        self.passes_to = passes_to

    def send(self, msg: Outgoing) -> Sent:
        """Keep the message, or pass it on; its provider id is `memory:<message id>`."""
        if self.passes_to is None:
            self.sent.append(msg)
        else:
            self.passes_to(msg)
        return Sent(provider_id=f"memory:{msg.id}", thread_id=msg.thread_id)

    def reconcile(self, msg: Outgoing) -> Reconciliation:
        """Sent if this channel remembers it; a dry run cannot know about real providers (and
        reconciles before it sends anything)."""
        if any(m.id == msg.id for m in self.sent):
            return Reconciliation(Reconciled.SENT, provider_id=f"memory:{msg.id}")
        return Reconciliation(Reconciled.UNKNOWN)

    def close(self) -> None:
        """Nothing to release."""
