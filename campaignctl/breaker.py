"""The circuit breaker: a channel whose recent attempts mostly fail transiently is paused.

A provider outage (5xx for an hour) must not spend every due message's attempts. When at least
`MIN_ATTEMPTS` of the attempts in the last `WINDOW` were made and `THRESHOLD` of them failed
transiently, the channel trips: no new claims until `until`. Then ONE message goes as a probe;
success closes the breaker, a transient failure pauses it again, twice as long (capped at
`MAX_PAUSE`). A probe whose process died is given up after `PROBE_TIMEOUT`, and the next one goes.

The state is a small JSON value in the database's `meta` table (`breaker.CHANNEL`), read and
written inside the engine's claim and record transactions, so every process on the database
shares one breaker. Everything here is a pure function of the recorded attempts and `now`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

#: Attempts older than this do not count toward tripping.
WINDOW = timedelta(minutes=10)
#: Fewest attempts in the window before the breaker may trip.
MIN_ATTEMPTS = 5
#: Share of those attempts that must have failed transiently.
THRESHOLD = 0.8
#: How many recent attempts are remembered (and shown by `status`).
KEEP = 20
#: The first pause; each failed probe doubles it, up to MAX_PAUSE.
FIRST_PAUSE = timedelta(minutes=1)
MAX_PAUSE = timedelta(minutes=30)
#: A probe not recorded after this long (its process died) lets another probe go.
PROBE_TIMEOUT = timedelta(minutes=5)


@dataclass(frozen=True)
class Attempt:
    """One send's outcome as the breaker sees it: did the provider answer (`ok`) or fail
    transiently (5xx, 429, timeout), and with what error."""

    at: datetime
    ok: bool
    error: str | None = None


def pause(trips: int) -> timedelta:
    """How long the channel pauses after its `trips`-th consecutive trip."""
    doubled: timedelta = FIRST_PAUSE * (1 << min(max(trips - 1, 0), 20))
    return min(doubled, MAX_PAUSE)


@dataclass(frozen=True)
class Breaker:
    """One channel's breaker. Closed when `trips` is 0; otherwise paused until `until`, then
    half-open (one probe)."""

    recent: tuple[Attempt, ...] = ()
    trips: int = 0
    until: datetime | None = None
    probing: bool = False

    def gate(self, now: datetime) -> int | None:
        """How many messages may be claimed at `now`: None (no limit), 0 (paused) or 1 (probe)."""
        if self.trips == 0:
            return None
        if self.until is not None and now < self.until:
            return 0
        return 1

    def paused(self, now: datetime) -> bool:
        """Whether the channel takes no claims at `now` (a pause, or a probe in flight)."""
        return self.gate(now) == 0

    def probe(self, now: datetime) -> Breaker:
        """One message was claimed as the probe: the others wait until it is recorded."""
        return replace(self, until=now + PROBE_TIMEOUT, probing=True)

    def record(self, attempts: Iterable[Attempt]) -> Breaker:
        """The breaker after these outcomes (in the order they happened)."""
        attempts = tuple(attempts)
        if not self.trips and all(a.ok for a in attempts) and self.quiet():
            # nothing failed, before or now: nothing can trip, only the memory moves on
            return replace(self, recent=(*self.recent, *attempts)[-KEEP:])
        b = self
        for a in attempts:
            recent = (*b.recent, a)[-KEEP:]
            if b.trips:
                if a.ok:  # the provider answers again: close, forget the outage
                    b = Breaker(recent=(a,))
                elif b.probing or (b.until is not None and a.at >= b.until):
                    trips = b.trips + 1
                    b = Breaker(recent, trips, a.at + pause(trips))
                else:  # a send claimed before the trip failed too: the pause stands
                    b = replace(b, recent=recent)
                continue
            window = [x for x in recent if x.at > a.at - WINDOW]
            failed = sum(1 for x in window if not x.ok)
            if len(window) >= MIN_ATTEMPTS and failed >= THRESHOLD * len(window):
                b = Breaker(recent, 1, a.at + pause(1))
            else:
                b = replace(b, recent=recent)
        return b

    def quiet(self) -> bool:
        """Closed with no failure to remember: successes alone need not be stored."""
        return self.trips == 0 and all(a.ok for a in self.recent)

    def failures(self) -> tuple[int, int, str | None]:
        """Of the remembered attempts: how many failed, how many there were, the last error."""
        failed = [a for a in self.recent if not a.ok]
        return len(failed), len(self.recent), failed[-1].error if failed else None

    def to_json(self) -> str:
        return json.dumps(
            {
                "recent": [[a.at.isoformat(), a.ok, a.error] for a in self.recent],
                "trips": self.trips,
                "until": self.until.isoformat() if self.until else None,
                "probing": self.probing,
            }
        )

    @classmethod
    def from_json(cls, text: str | None) -> Breaker:
        """The stored state; a missing or unreadable value is a closed breaker."""
        if not text:
            return cls()
        try:
            d = json.loads(text)
            return cls(
                recent=tuple(
                    Attempt(datetime.fromisoformat(t), bool(ok), err) for t, ok, err in d["recent"]
                ),
                trips=int(d["trips"]),
                until=datetime.fromisoformat(d["until"]) if d["until"] else None,
                probing=bool(d["probing"]),
            )
        except (ValueError, KeyError, TypeError):
            return cls()
