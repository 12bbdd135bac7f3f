"""What one pass did: counts per (campaign, step, channel) and when the next pass has work."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from campaignctl.breaker import Breaker
from campaignctl.channels.base import ChannelError

#: What a pass counts, per (campaign, step, channel).
#: `deferred_breaker`: due on a channel its circuit breaker pauses (the provider is failing),
#: not held by a limit. `deferred_ab_wait`: held for a step's A/B winner.
#: `deferred_frequency_cap`: held by `settings.max_per_lead` (the lead had its share of
#: messages in the window).
COUNTERS = (
    "sent",
    "deferred_limit",
    "deferred_window",
    "deferred_breaker",
    "deferred_ab_wait",
    "deferred_frequency_cap",
    "failed",
    "skipped",
    "retry",
    "uncertain",
)


@dataclass
class PassResult:
    """What one pass did, and when the next one has something to do."""

    counts: dict[tuple[str, str, str], dict[str, int]] = field(
        default_factory=lambda: defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    )
    #: Earliest instant a due message may go, when only pacing (per_second, min_interval,
    #: jitter) holds it: `send` waits for these.
    pace_until: datetime | None = None
    #: Earliest instant anything may go (limits, windows, delays included): the daemon waits.
    next_due: datetime | None = None
    #: Channels stopped by refused credentials, with the error.
    auth_errors: dict[str, ChannelError] = field(default_factory=dict)
    transient_errors: int = 0
    #: What happened to each message (sent, failed, reconciled, ...), one dict each, since the
    #: last `emit`: with a listener (`on_event`), handed to it as each batch commits and then
    #: forgotten, so that a pass of a million messages holds none; kept here without one.
    events: list[dict[str, Any]] = field(default_factory=list)
    on_event: Callable[[dict[str, Any]], None] | None = field(
        default=None, repr=False, compare=False
    )
    #: Per campaign: leads its audience could not be evaluated for at the last enrolment, and
    #: the first error (they are not enrolled; the next enrolment tries them again).
    audience_skipped: dict[str, tuple[int, str]] = field(default_factory=dict)
    #: Channels paused by their circuit breaker at the end of the pass.
    paused: dict[str, Breaker] = field(default_factory=dict)
    #: Campaigns whose skipped-lead count or reason differs from the one recorded before
    #: (`send --quiet` warns only then), and channels whose breaker tripped in this pass.
    audience_changed: set[str] = field(default_factory=set)
    tripped: set[str] = field(default_factory=set)

    def add(self, campaign: str, step: str, channel: str, counter: str, n: int = 1) -> None:
        self.counts[(campaign, step, channel)][counter] += n

    def emit(self) -> None:
        """Hand the events noted since the last call to the listener, once their transaction
        has committed (the engine calls this after each batch)."""
        if self.on_event is None or not self.events:
            return
        events, self.events = self.events, []
        for ev in events:
            self.on_event(ev)

    def total(self, counter: str) -> int:
        return sum(c[counter] for c in self.counts.values())

    def merge(self, other: PassResult) -> None:
        """Add another pass's counts into this one (a run is many passes)."""
        for key, c in other.counts.items():
            for k, v in c.items():
                self.counts[key][k] += v
        self.auth_errors.update(other.auth_errors)
        self.transient_errors += other.transient_errors
        self.audience_skipped.update(other.audience_skipped)  # the latest enrolment's count
        self.audience_changed |= other.audience_changed
        self.tripped |= other.tripped
